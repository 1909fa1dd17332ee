"""The query benchmark: its data generator, and a --quick run end to end on a private emulator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import benchmarks.common
from benchmarks.etl_query import log_sample, main, parse_args, plan, uuid_texts

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_uuid_texts_are_uuid_shaped_and_distinct() -> None:
    values = uuid_texts(np.random.default_rng(3), 5000).to_pylist()
    assert len(values) == 5000 == len(set(values))
    assert all(UUID.match(v) for v in values)


def test_plan_fills_each_hour_exactly_with_the_generators_service_mix() -> None:
    sample = log_sample(1000, seed=5)
    layout = plan(sample, rate=37)
    assert sum(layout.per_hour.values()) == 37 * 3600
    assert len(layout.services) >= 3
    for service in layout.services:
        assert layout.rows_by_service[service].size > 0
        assert layout.per_hour[service] > 0


def test_bad_options_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--hours", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--workers", "0"])
    quick = parse_args(["--quick"])
    assert (quick.hours, quick.rate, quick.repeat) == (2, 50, 2)


def test_quick_run_counts_every_row_and_reports_bytes_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    assert main(["--quick"]) == 0
    (path,) = tmp_path.glob("etl-query-*.json")
    result = json.loads(path.read_text())
    assert result["lake"]["rows"] == 2 * 50 * 3600
    # One file per (service, hour).
    assert result["lake"]["data_files"] == 2 * result["lake"]["services"]
    assert len(result["runs"]) == 2
    for run in result["runs"]:
        assert run["correct"] is True
        assert run["data_files_read"] == result["lake"]["data_files"]
        # Only the two columns the query names are read: far less than the table.
        assert 0 < run["bytes_read"] < result["lake"]["table_bytes"] / 2
        assert run["wall_seconds"] >= run["query_seconds"] > 0
