"""Inputs the fuzzing found answering 500, kept as plain tests (each was a 500 before its fix)."""

from __future__ import annotations

from typing import Any

from tests.fuzz.support import AUTH, Target


def _log(timestamp: str = "2026-01-05T00:00:00.000Z", **fields: Any) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "kind": "log",
        "service": "api-gateway",
        "level": "INFO",
        "message": "m",
        **fields,
    }


def test_a_vanishing_pattern_step_is_a_422(targets: dict[str, Target]) -> None:
    body = {
        "composition": {"baseline": 0.0, "high": 0.0},
        "start": "0041-01-01T00:08:11Z",
        "end": "2000-01-01T00:08:17Z",
        "step_seconds": 5e-324,
    }
    with targets["pattern-generator"].client() as client:
        resp = client.post("/api/patterns/evaluate", json=body)
    assert resp.status_code == 422, resp.text
    assert "step_seconds" in resp.text


def test_an_integer_attribute_beyond_64_bits_is_a_rejected_record(
    targets: dict[str, Target],
) -> None:
    # 2**63 fits JSON (orjson writes unsigned 64-bit) but not OTLP: consolidation answered 500.
    batch = {
        "records": [
            _log(message="ok"),
            _log(attributes={"n": 2**64}),
            _log(attributes={"n": 2**63}),
        ]
    }
    for name, path in (
        ("ingestion-interface", "/api/ingest/batch"),
        ("log-consolidation", "/api/logs/batch"),
    ):
        with targets[name].client(headers=AUTH) as client:
            resp = client.post(path, json=batch)
        assert resp.status_code == 200, f"{name}: {resp.text}"
        body = resp.json()
        assert body["accepted"] == 1
        assert [r["index"] for r in body["rejected"]] == [1, 2]
        assert all("64-bit" in r["problems"][0] for r in body["rejected"])


def test_timestamps_far_from_now_are_stored_or_refused_never_a_500(
    targets: dict[str, Target],
) -> None:
    """Year 1 was written as "1-01-01T..." (not RFC 3339) and broke consolidation; years OTLP's
    64-bit nanoseconds cannot carry are refused there, per record."""
    records = [_log(), _log("0001-01-01T00:00:00.000Z"), _log("9999-12-31T23:59:59.999Z")]
    with targets["ingestion-interface"].client(headers=AUTH) as client:
        shifted = client.post("/api/ingest", json=_log("0001-01-01T00:00:00+01:00"))
        assert shifted.status_code == 422 and "out of range" in shifted.text
        accepted = client.post("/api/ingest/batch", json={"records": records})
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 3, accepted.text
    with targets["log-consolidation"].client(headers=AUTH) as client:
        resp = client.post("/api/logs/batch", json={"records": records})
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 1
    assert [r["index"] for r in resp.json()["rejected"]] == [1, 2]
    assert "OTLP" in resp.json()["rejected"][0]["problems"][0]
