"""Property-based fuzzing of the data path with record-shaped input.

schemathesis sees a record as a bag of strings, so almost everything it sends is refused early.
These batches are close to valid: any moment from year 1 to 9999 in any offset, integers of any
size, non-finite floats, long and odd unicode, hostile service names. Each batch goes to the
Ingestion Interface and to Log Consolidation; both must answer 200 or 422 (never a 5xx), and
account for every record: accepted plus rejected is the batch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.support import AUTH, MAX_EXAMPLES, Target

OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))]
)
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=OFFSETS
)
TIMESTAMPS = st.one_of(
    MOMENTS.map(lambda moment: moment.isoformat()),
    MOMENTS.map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"),
    st.text(max_size=40),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=60),
)
HEX = "0123456789abcdef"
SERVICES = st.sampled_from(["api-gateway", "payment-service", "Bad Service", "../x"])
# Optional fields any kind may carry; hostile values included.
COMMON = {
    "host": st.text(max_size=300),
    "source": st.text(max_size=60),
    "anomaly_score": st.floats(min_value=-1, max_value=101),
    "is_anomaly": st.booleans(),
    "scenario_id": st.one_of(st.none(), st.text(max_size=140)),
    "anomaly_type": st.one_of(st.none(), st.text(max_size=70)),
    "attributes": st.dictionaries(st.text(max_size=140), SCALARS, max_size=70),
}
# Each kind with its required fields, so most records are valid and reach the sinks.
LOGS = st.fixed_dictionaries(
    {
        "timestamp": TIMESTAMPS,
        "kind": st.just("log"),
        "service": SERVICES,
        "level": st.sampled_from(["INFO", "ERROR", "LOUD"]),
        "message": st.text(max_size=300),
    },
    optional=COMMON,
)
METRICS = st.fixed_dictionaries(
    {
        "timestamp": TIMESTAMPS,
        "kind": st.just("metric"),
        "service": SERVICES,
        "metric_name": st.sampled_from(["cpu.usage", "Bad Name"]),
        "value": st.floats(allow_nan=False, allow_infinity=False),
        "unit": st.text(max_size=20),
    },
    optional=COMMON,
)
SPANS = st.fixed_dictionaries(
    {
        "timestamp": TIMESTAMPS,
        "kind": st.just("apm"),
        "service": SERVICES,
        "trace_id": st.one_of(st.text(HEX, min_size=32, max_size=32), st.text(max_size=40)),
        "span_id": st.one_of(st.text(HEX, min_size=16, max_size=16), st.text(max_size=20)),
        "name": st.text(max_size=300),
        "duration_ms": st.floats(min_value=-1, max_value=1e300),
        "status": st.sampled_from(["OK", "ERROR", "UNSET", "ok"]),
    },
    optional=COMMON,
)
RECORDS = st.one_of(LOGS, METRICS, SPANS)
BATCHES = st.lists(RECORDS, min_size=1, max_size=8)


def _post_batch(target: Target, path: str, batch: list[dict[str, Any]]) -> None:
    with target.client(headers=AUTH) as client:
        resp = client.post(path, json={"records": batch})
    assert resp.status_code in {200, 422}, f"{path}: {resp.status_code} {resp.text[:300]}"
    body = resp.json()
    if resp.status_code == 200:
        assert body["accepted"] + len(body["rejected"]) == len(batch), body
    else:
        assert body["detail"], body


def test_record_shaped_batches_are_accepted_or_refused_never_a_5xx(
    targets: dict[str, Target],
) -> None:
    ingestion, consolidation = targets["ingestion-interface"], targets["log-consolidation"]

    @settings(
        max_examples=MAX_EXAMPLES * 2,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=BATCHES)
    def run(batch: list[dict[str, Any]]) -> None:
        _post_batch(ingestion, "/api/ingest/batch", batch)
        _post_batch(consolidation, "/api/logs/batch", batch)

    run()
