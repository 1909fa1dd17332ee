"""An independent reading of the ground truth: which windows a record falls in, from the
window's JSON alone (the rule stages/orchestrator/README.md documents)."""

from __future__ import annotations

import bisect
from typing import Any

from stages.common import estate


def in_scope(window: dict[str, Any], record: dict[str, Any]) -> bool:
    """Timestamps are all RFC 3339 with milliseconds and a Z, so they compare as strings; a
    span's time is its trace's start (``at``, set by ``with_trace_starts``)."""
    end = window["end"] or window["planned_end"]
    if not window["start"] <= record["at"] < end:
        return False
    scope = window["scope"]
    service, host = record["service"], record["host"]
    pinned = {s.name for s in estate.SERVICES if set(s.hosts) & set(scope["hosts"])}
    if service in pinned and host not in scope["hosts"]:
        return False
    if record["kind"] == "log":
        return service in scope["logs"].get(record["log_type"], [])
    if record["kind"] == "metric":
        return service in scope["metrics"].get(record["metric_name"], [])
    return service in scope["apm"]


def with_trace_starts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records, each with ``at``: its timestamp, or for a span its trace's first span's."""
    starts: dict[str, str] = {}
    for record in records:
        if record["kind"] == "apm":
            trace = record["trace_id"]
            starts[trace] = min(starts.get(trace, record["timestamp"]), record["timestamp"])
    return [
        record | {"at": starts.get(record.get("trace_id") or "", record["timestamp"])}
        if record["kind"] == "apm"
        else record | {"at": record["timestamp"]}
        for record in records
    ]


def windows_of(windows: list[dict[str, Any]], record: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in windows if in_scope(w, record)]


def owners_by_record(
    windows: list[dict[str, Any]], records: list[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    """For each record, the windows it falls in (each window only looks at the records of its
    time range, so hundreds of windows over tens of thousands of records stay cheap)."""
    order = sorted(range(len(records)), key=lambda i: records[i]["at"])
    stamps = [records[i]["at"] for i in order]
    owners: list[list[dict[str, Any]]] = [[] for _ in records]
    for window in windows:
        first = bisect.bisect_left(stamps, window["start"])
        last = bisect.bisect_left(stamps, window["end"] or window["planned_end"])
        for i in order[first:last]:
            if in_scope(window, records[i]):
                owners[i].append(window)
    return owners


def label_errors(windows: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[str]:
    """Every way the records and the windows disagree, both directions."""
    errors = []
    records = with_trace_starts(records)
    for record, owners in zip(records, owners_by_record(windows, records), strict=True):
        where = (
            f"{record['kind']} {record.get('log_type') or record.get('metric_name') or ''} "
            f"{record['service']}/{record['host']} at {record['timestamp']}"
        )
        if not owners and (record["is_anomaly"] or record["scenario_id"] is not None):
            errors.append(f"labelled {record['scenario_id']} outside every window: {where}")
        elif owners and not record["is_anomaly"]:
            errors.append(f"unlabelled inside {owners[0]['scenario_id']}: {where}")
        elif owners and (record["scenario_id"], record["anomaly_type"]) not in {
            (w["scenario_id"], w["anomaly_type"]) for w in owners
        }:
            errors.append(f"labelled {record['scenario_id']}, not one of its windows: {where}")
    return errors
