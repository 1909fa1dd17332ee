"""``python -m stages.orchestrator history`` against a running orchestrator (its peers stubbed)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from stages.common.estate import METRICS_BY_SERVICE
from tests.orchestrator.processes import running
from tests.orchestrator.stubs import Peers
from tests.support.processes import ROOT


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Peers]]:
    with running(tmp_path_factory.mktemp("history-cli"), "orchestrator") as (urls, peers):
        yield urls["orchestrator"], peers


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.orchestrator",
            "history",
            "--url",
            url,
            "--poll",
            "0.2",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_starts_a_run_waits_and_reports_it(orchestrator: tuple[str, Peers]) -> None:
    url, peers = orchestrator
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(hours=1)
    done = _cli(
        url, "--start", start.isoformat(), "--end", end.isoformat(),
        "--services", "auth-service", "--seed", "4",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "seed 4" in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    # 360 steps of 19 series and 2 logs or spans: two calls of at most 5,000 records
    per_step = len(METRICS_BY_SERVICE["auth-service"]) + 2
    assert last.startswith("completed") and "chunks 2/2" in last and " 0 failed" in last
    assert f"records {360 * per_step}/{360 * per_step} accepted" in last
    assert any("series" in call for call in peers.synthesize)


def test_a_refused_request_exits_2_with_the_reason(orchestrator: tuple[str, Peers]) -> None:
    url, _ = orchestrator
    refused = _cli(url, "--days", "400")
    assert refused.returncode == 2
    assert "422" in refused.stderr and "days" in refused.stderr
