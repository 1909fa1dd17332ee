"""The direct OTLP-JSON path matches the protobuf path byte for byte, index entries included."""

from __future__ import annotations

import orjson
import pytest

from stages.common.records import Record
from stages.consolidation.canonical import records_to_otlp_json
from stages.consolidation.otel import records_to_request, to_otlp_json
from stages.consolidation.query import entries_from_request
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import AnomalyRequest, SynthesizeRequest

OBSERVED = 1_764_288_000_123_456_789


def _same_as_protobuf(records: list[Record]) -> None:
    direct = records_to_otlp_json(records, "bench", OBSERVED)
    assert direct is not None
    document, entries = direct
    request = records_to_request(records, "bench", OBSERVED)
    assert orjson.dumps(document) == orjson.dumps(to_otlp_json(request))
    assert [e.to_dict() for e in entries] == [e.to_dict() for e in entries_from_request(request)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_synthesised_batches_of_every_kind(seed: int) -> None:
    batch = synthesize(SynthesizeRequest(count=600, seed=seed, forward=False), EntityPool())
    records = [Record.model_validate(r) for r in batch.records]
    assert {r.kind for r in records} == {"log", "metric", "apm"}
    _same_as_protobuf(records)


def test_anomalous_batch() -> None:
    request = SynthesizeRequest(
        count=300,
        seed=7,
        forward=False,
        timestamp="2025-11-09T13:00:00Z",
        anomaly=AnomalyRequest(
            anomaly_type="cpu_spike",
            scenario_id="s-1",
            intensity=90,
            window_start="2025-11-09T12:59:00Z",
            window_end="2025-11-09T13:10:00Z",
        ),
        anomalous_share=0.5,
    )
    records = [Record.model_validate(r) for r in synthesize(request, EntityPool()).records]
    assert any(r.is_anomaly for r in records)
    _same_as_protobuf(records)


def test_edge_values() -> None:
    base = {"timestamp": "2025-11-09T13:24:33.120Z", "kind": "log", "service": "checkout-api"}
    records = [
        Record.model_validate(base | {"level": "INFO", "message": ""}),
        Record.model_validate(
            base
            | {
                "level": "WARN",
                "message": "x",
                "host": "h-1",
                "source": "app",
                "attributes": {"": 1, "b": False, "f": 1.5, "n": None, "s": "", "big": 2**62},
            }
        ),
        Record.model_validate(
            base | {"kind": "metric", "metric_name": "cpu.pct", "value": 0.0, "unit": "%"}
        ),
        Record.model_validate(
            base
            | {
                "kind": "apm",
                "trace_id": "ab" * 16,
                "span_id": "cd" * 8,
                "parent_span_id": "ef" * 8,
                "name": "GET /",
                "duration_ms": 0,
                "status": "ERROR",
            }
        ),
        Record.model_validate(
            base | {"timestamp": "1970-01-01T00:00:00.000Z", "level": "INFO", "message": "epoch"}
        ),
    ]
    _same_as_protobuf(records)


def test_values_protobuf_refuses_take_the_protobuf_path() -> None:
    base = {"timestamp": "2025-11-09T13:24:33.120Z", "kind": "log", "service": "checkout-api"}
    # The model refuses integers outside int64 since 2026-12-03; a record built without it
    # (model_construct) still must not reach the direct path.
    huge = Record.model_construct(
        **(base | {"level": "INFO", "message": "m", "attributes": {"n": 2**63}})
    )
    early = Record.model_validate(
        base | {"timestamp": "1969-12-31T23:59:59.000Z", "level": "INFO", "message": "m"}
    )
    assert records_to_otlp_json([huge], "bench", OBSERVED) is None
    assert records_to_otlp_json([early], "bench", OBSERVED) is None
