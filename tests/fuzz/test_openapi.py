"""schemathesis against the OpenAPI document of every built HTTP service.

Each operation gets valid (positive) and invalid (negative) generated requests, sent with the
control token. A response fails the test when it is a 5xx other than 503-with-Retry-After (a peer
is down, which is how these services run here), when its status is not declared in the document,
when its body does not match the schema its status declares, or when its content type is not the
declared one; an invalid request must get a 4xx. All failures of a service are collected, so
one run lists every broken operation.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from stages.ops import registry
from tests.fuzz.support import AUTH, MAX_EXAMPLES, Target, http_services


class UnexpectedServerError(AssertionError):
    pass


def no_server_error_but_retryable_503(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """5xx is a bug, except 503 with Retry-After: the documented "peer unavailable" answer."""
    if response.status_code < 500:
        return None
    names = {name.lower() for name in response.headers}
    if response.status_code == 503 and "retry-after" in names:
        return None
    raise UnexpectedServerError(
        f"{case.operation.label} answered {response.status_code}: {response.text[:500]}"
    )


CHECKS = {
    GenerationMode.POSITIVE: [
        no_server_error_but_retryable_503,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ],
    GenerationMode.NEGATIVE: [
        no_server_error_but_retryable_503,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ],
}


def stop_generation(target: Target) -> None:
    """Fuzzed start requests may ask for hours of generation: stop it after every case."""
    with target.client(headers=AUTH) as client:
        client.post("/api/continuous/stop").raise_for_status()
        running = client.get("/api/executions", params={"status": "running"}).json()["items"]
        for execution in running:
            client.post(f"/api/executions/{execution['id']}/stop").raise_for_status()


AFTER_CASE: dict[str, Callable[[Target], None]] = {"scenario-orchestrator": stop_generation}


def fuzz_operation(operation: APIOperation, mode: GenerationMode, target: Target) -> str | None:
    """Run ``MAX_EXAMPLES`` generated requests; the first failure's report, or None."""
    after_case = AFTER_CASE.get(target.service.name)

    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # No shrinking: it could take minutes; the report carries the failing request as curl.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        response = case.call(base_url=target.url, headers=AUTH, timeout=30)
        try:
            case.validate_response(response, checks=CHECKS[mode], headers=AUTH)
        finally:
            # Only an accepted POST can have started something.
            if after_case is not None and case.method == "POST" and response.status_code < 300:
                after_case(target)

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): there is no negative case to send.
        return None
    # schemathesis reports failed checks as an exception group; both kinds are collected so the
    # test lists every failing operation at the end.
    except (Exception, BaseExceptionGroup) as exc:
        return f"{operation.label} ({mode.value}): {exc}"
    return None


@pytest.mark.parametrize("name", [svc.name for svc in http_services()])
def test_every_operation_survives_generated_requests(name: str, targets: dict[str, Target]) -> None:
    target = targets[name]
    schema = schemathesis.openapi.from_url(f"{target.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{name} documents no operation"
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (failure := fuzz_operation(operation, mode, target)) is not None
    ]
    assert not failures, f"{len(failures)} failing operation(s):\n\n" + "\n\n".join(failures)


def test_the_fuzzed_services_are_the_whole_http_fleet() -> None:
    """The registry's every service except the emulator is fuzzed once it is built; the dashboard
    is among them (a service missing here would silently escape the fuzzing)."""
    fuzzed = {svc.name for svc in http_services()}
    expected = {svc.name for svc in registry.SERVICES} - {registry.EMULATOR}
    assert fuzzed == expected, f"not built, so not fuzzed: {sorted(expected - fuzzed)}"


def test_a_server_error_fails_the_check() -> None:
    """The 5xx check itself: a 500 fails, a 503 without Retry-After fails, with it passes."""

    class _Operation:
        label = "GET /x"

    class _Case:
        operation = _Operation()

    def check(status: int, headers: dict[str, str]) -> None:
        response = SimpleNamespace(status_code=status, headers=httpx.Headers(headers), text="{}")
        no_server_error_but_retryable_503(None, response, _Case())  # type: ignore[arg-type]

    for status, headers in ((500, {}), (503, {}), (502, {"Retry-After": "1"})):
        with pytest.raises(UnexpectedServerError):
            check(status, headers)
    check(503, {"Retry-After": "1"})
    check(422, {})
