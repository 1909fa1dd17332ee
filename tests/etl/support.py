"""Raw objects as the consumer writes them, the ETL process, and exactly-once bookkeeping."""

from __future__ import annotations

import gzip
import itertools
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.compute as pc

from stages.common import aws, lake, resources
from stages.common.config import Settings
from stages.etl.tables import open_catalog
from stages.synthesis.entity_pool import EntityPool
from stages.synthesis.generator import synthesize
from stages.synthesis.schemas import SynthesizeRequest
from tests.support.processes import base_env, free_port, start_service

_SEQUENCE = itertools.count(1000)
TABLE_OF_KIND = {"log": "logs", "metric": "metrics", "apm": "apm"}


def records(
    count: int, seed: int, timestamp: str, spread_seconds: int = 1200
) -> list[dict[str, Any]]:
    """Realistic records of all three kinds from the synthesis generator, spread over
    ``spread_seconds`` from ``timestamp``."""
    body = {"count": count, "seed": seed, "spread_seconds": spread_seconds, "timestamp": timestamp}
    return synthesize(SynthesizeRequest.model_validate(body), EntityPool()).records


@dataclass
class RawLake:
    """Writes raw objects in the consumer's layout and remembers every record line it wrote."""

    settings: Settings

    def __post_init__(self) -> None:
        self.s3 = aws.client("s3", self.settings)
        self.sent: dict[str, str] = {}  # event_id -> kind
        self.bad_lines = 0
        self.keys: list[str] = []

    def put(
        self, batch: Iterable[dict[str, Any]], *, per_object: int = 40, gzip_it: bool = False
    ) -> list[str]:
        """One object per (kind, service, hour) group of up to ``per_object`` records."""
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for record in batch:
            ts = record["timestamp"]
            hour = lake.hour_path(int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]))
            groups.setdefault((record["kind"], record["service"], hour), []).append(record)
        written = []
        for (kind, service, hour), group in sorted(groups.items()):
            for start in range(0, len(group), per_object):
                chunk = group[start : start + per_object]
                body = b"".join(orjson.dumps(r) + b"\n" for r in chunk)
                written.append(self.put_object(kind, service, hour, body, gzip_it=gzip_it))
                for r in chunk:
                    self.sent[r["event_id"]] = kind
        return written

    def put_object(
        self, kind: str, service: str, hour: str, body: bytes, *, gzip_it: bool = False
    ) -> str:
        spec = resources.stream_for_kind(self.settings, kind)
        first = next(_SEQUENCE)
        key = lake.object_key(
            lake.service_partition(service, hour),
            spec.name,
            "shardId-000000000000",
            str(first),
            str(first + 1),
            "gzip" if gzip_it else "none",
        )
        self.s3.put_object(
            Bucket=spec.bucket, Key=key, Body=gzip.compress(body) if gzip_it else body
        )
        self.keys.append(key)
        return key


def table_counts(settings: Settings) -> dict[str, Counter[str]]:
    """event_id -> number of rows, per data table."""
    catalog = open_catalog(settings, name="checker")
    out: dict[str, Counter[str]] = {}
    for name in TABLE_OF_KIND.values():
        rows = catalog.load_table(f"telemetry.{name}").scan(selected_fields=("event_id",))
        out[name] = Counter(rows.to_arrow().column("event_id").to_pylist())
    return out


def quarantine_rows(settings: Settings) -> int:
    catalog = open_catalog(settings, name="checker")
    return catalog.load_table("telemetry.quarantine").scan().to_arrow().num_rows


def exactly_once(lake_: RawLake, settings: Settings) -> tuple[bool, str]:
    """Whether every sent record is in its table once; the counts as a message either way."""
    counts = table_counts(settings)
    lines = []
    ok = True
    for kind, name in TABLE_OF_KIND.items():
        sent = {e for e, k in lake_.sent.items() if k == kind}
        got = counts[name]
        lost = [e for e in sent if got[e] == 0]
        dups = [e for e, n in got.items() if n > 1]
        extra = [e for e in got if e not in sent]
        lines.append(
            f"{name}: in {len(sent)}, out {sum(got.values())}, distinct {len(got)}, "
            f"lost {len(lost)}, duplicated {len(dups)}, unknown {len(extra)}"
        )
        ok = ok and not lost and not dups and not extra
    return ok, "; ".join(lines)


def distinct_files(settings: Settings, name: str) -> int:
    table = open_catalog(settings, name="checker").load_table(f"telemetry.{name}")
    return table.inspect.files().num_rows


def partitions_files(settings: Settings, name: str) -> Counter[tuple[str, Any, int]]:
    table = open_catalog(settings, name="checker").load_table(f"telemetry.{name}")
    parts = table.inspect.files().column("partition").to_pylist()
    return Counter((p["service"], p["dt"], p["hr"]) for p in parts)


def source_keys(settings: Settings, name: str) -> set[str]:
    table = open_catalog(settings, name="checker").load_table(f"telemetry.{name}")
    column = table.scan(selected_fields=("source_key",)).to_arrow().column("source_key")
    return set(pc.unique(column).to_pylist())


class EtlProcess:
    """``python -m stages.etl`` on a free port against the emulator at ``endpoint``."""

    def __init__(self, endpoint: str, log_dir: Path, name: str = "etl", **env: str) -> None:
        self.port = free_port()
        settings = {
            "ETL_PORT": str(self.port),
            "ETL_INTERVAL_SECONDS": "0.5",
            "ETL_LEASE_SECONDS": "3",
            "ETL_FULL_LISTING_SECONDS": "0",
            "ETL_MAINTENANCE_INTERVAL_SECONDS": "3600",
            "ETL_WORKER_ID": name,
        }
        settings.update(env)
        self.proc, self.url = start_service(
            "etl", base_env(endpoint, **settings), log_dir, self.port, name=name
        )

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/etl/status", timeout=10).json()

    def log_has(self, text: str) -> bool:
        return text in self.proc.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop()


def reset(settings: Settings) -> None:
    """Empty the raw and processed buckets, drop the tables, free the lease: a fresh lake on a
    shared emulator."""
    s3 = aws.client("s3", settings)
    catalog = open_catalog(settings, name="reset")
    if ("telemetry",) in catalog.list_namespaces():
        for identifier in catalog.list_tables("telemetry"):
            catalog.drop_table(identifier)
    for bucket in resources.buckets(settings):
        keys = [o["Key"] for o in lake.list_objects(s3, bucket)]
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk]})
    db = aws.client("dynamodb", settings)
    for item in db.scan(TableName=settings.etl_lease_table).get("Items", []):
        db.delete_item(TableName=settings.etl_lease_table, Key={"lease_key": item["lease_key"]})


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached in {timeout}s (last: {last!r})")
