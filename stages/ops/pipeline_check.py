"""The end-to-end check behind ``./test-pipeline.sh``: is what ingestion accepted in the lake?

``python -m stages.ops.pipeline_check [--duration 30] [--rate 100] [--anomaly cpu_spike]``

1. The fleet: started (as ``./start.sh`` does) when none of it runs; a fleet that is partly down
   fails here, naming what is down. Every health endpoint must answer 200.
2. AWS: every stream is ACTIVE, every bucket and the lease table exist.
3. Continuous generation at a known rate for ``--duration`` seconds, with an anomaly triggered
   halfway through.
4. What the Ingestion Interface accepted during the run is read from its category files
   (``DATA_DIR/categories``, written for every accepted record; their count is checked against
   its ``accepted`` counter), then the lake is polled (bounded, with progress) until the consumer
   has flushed them all.
5. Assertions: each accepted ``event_id`` is in its kind's bucket exactly once, in the partition
   of its own service and UTC hour; the triggered anomaly's records are labelled; Log
   Consolidation and the category files received the records; no dead letters. Sample records
   and a summary table are printed; any mismatch exits 1 with what is wrong.

Every address comes from the same settings as the fleet (ports, ``AWS_ENDPOINT_URL``,
``DATA_DIR``, ``CONTROL_TOKEN``), so the check runs against whatever ``./start.sh`` started.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from botocore.exceptions import BotoCoreError, ClientError

from stages.common import aws, resources
from stages.common.config import Settings
from stages.common.http import headers
from stages.common.lake import (
    dead_letter_partition,
    hour_of,
    is_hidden,
    list_objects,
    prefix,
    read_lines,
    service_partition,
)
from stages.ops.fleet import Fleet, FleetError, probe
from stages.ops.registry import BY_NAME, EMULATOR, SERVICES, Service

ORCHESTRATOR = "scenario-orchestrator"
INGESTION = "ingestion-interface"
CONSOLIDATION = "log-consolidation"
CONSUMER = "kinesis-consumer"
ANOMALY_FOLDER = "anomaly"
# Objects written this long before the run began are not read: LastModified has second
# resolution and the AWS endpoint's clock may differ a little from ours.
CLOCK_MARGIN = timedelta(seconds=30)
PROGRESS_EVERY = 5.0
SAMPLE_CHARS = 300


class CheckFailed(Exception):
    """The pipeline is broken in a way that makes the remaining steps pointless."""


@dataclass(frozen=True)
class Options:
    duration: float
    rate: int
    interval: float
    anomaly: str
    flush_timeout: float

    @property
    def per_interval(self) -> int:
        return max(1, round(self.rate * self.interval))


@dataclass
class Accepted:
    """The records ingestion accepted during the run, by event_id."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    anomaly_copies: set[str] = field(default_factory=set)

    def ids_of_kind(self, kind: str) -> set[str]:
        return {eid for eid, rec in self.records.items() if rec.get("kind") == kind}


@dataclass
class LakeLine:
    key: str
    record: dict[str, Any]


@dataclass
class KindResult:
    spec: resources.StreamSpec
    accepted: int = 0
    found: int = 0
    missing: int = 0
    duplicated: int = 0
    misplaced: int = 0
    objects: int = 0
    partitions: int = 0


def say(message: str = "") -> None:
    print(message, flush=True)


# --- partitions -------------------------------------------------------------------------------
def expected_prefix(record: dict[str, Any]) -> str:
    """``service=<svc>/year=/month=/day=/hour=`` of a record's own service and UTC hour."""
    moment = parse_time(str(record["timestamp"]))
    return prefix(service_partition(record["service"], hour_of(moment)))


def partition_of(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/"


# --- HTTP -------------------------------------------------------------------------------------
class Services:
    """The fleet's HTTP APIs at the addresses the settings give."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http = httpx.Client(
            timeout=httpx.Timeout(30.0, connect=3.0), headers=headers(settings)
        )

    def url(self, name: str) -> str:
        return BY_NAME[name].url(self.settings)

    def get(self, name: str, path: str) -> Any:
        resp = self.http.get(self.url(name) + path)
        if resp.status_code != 200:
            raise CheckFailed(f"GET {self.url(name)}{path}: HTTP {resp.status_code} {resp.text}")
        return resp.json()

    def post(self, name: str, path: str, body: dict[str, Any]) -> Any:
        resp = self.http.post(self.url(name) + path, json=body)
        if resp.status_code == 409:
            raise CheckFailed(
                f"{name} refused {path}: {resp.json().get('message', resp.text)} "
                f"(stop the running generator with POST {self.url(name)}/api/continuous/stop)"
            )
        if not resp.is_success:
            raise CheckFailed(f"POST {self.url(name)}{path}: HTTP {resp.status_code} {resp.text}")
        return resp.json()


# --- step 1: the fleet ------------------------------------------------------------------------
def fleet_services(fleet: Fleet) -> list[Service]:
    """Every built service; the emulator only when the fleet runs the embedded one."""
    return [svc for svc in SERVICES if svc.available() and (svc.name != EMULATOR or fleet.embedded)]


def answering(svc: Service, settings: Settings) -> bool:
    """True when something answers HTTP at the service's address (healthy or not)."""
    result = probe(svc.health_url(settings), timeout=2.0)
    return result.healthy or result.detail.startswith("HTTP ")


def ensure_fleet(fleet: Fleet, settings: Settings) -> list[Service]:
    services = fleet_services(fleet)
    up = [svc for svc in services if answering(svc, settings)]
    if not up:
        say("==> none of the fleet is running: starting it (as ./start.sh does)")
        if fleet.start([]) != 0:
            raise CheckFailed("the fleet did not start (see the output above)")
    elif len(up) < len(services):
        down = [svc for svc in services if svc not in up]
        raise CheckFailed(
            "the fleet is partly down: "
            + ", ".join(f"{svc.name} (nothing answers at {svc.url(settings)})" for svc in down)
            + "; start it with ./start.sh "
            + " ".join(svc.name for svc in down)
        )
    return services


def check_health(services: Iterable[Service], settings: Settings) -> None:
    unhealthy = []
    for svc in services:
        result = probe(svc.health_url(settings), timeout=5.0)
        if not result.healthy:
            unhealthy.append(f"{svc.name} ({svc.health_url(settings)}: {result.detail})")
    if unhealthy:
        raise CheckFailed("not healthy: " + ", ".join(unhealthy))


# --- step 2: AWS resources --------------------------------------------------------------------
def check_resources(settings: Settings) -> None:
    kinesis, s3 = aws.client("kinesis", settings), aws.client("s3", settings)
    dynamodb = aws.client("dynamodb", settings)
    problems = []
    notes = []
    for spec in resources.streams(settings):
        try:
            summary = kinesis.describe_stream_summary(StreamName=spec.name)
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"stream {spec.name}: {exc}")
            continue
        status = summary["StreamDescriptionSummary"]["StreamStatus"]
        shards = summary["StreamDescriptionSummary"]["OpenShardCount"]
        if status != "ACTIVE":
            problems.append(f"stream {spec.name} is {status}")
        notes.append(f"{spec.name} ({shards} shard{'' if shards == 1 else 's'})")
    for bucket in resources.buckets(settings):
        try:
            s3.head_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"bucket {bucket}: {exc}")
    try:
        dynamodb.describe_table(TableName=settings.lease_table)
    except (ClientError, BotoCoreError) as exc:
        problems.append(f"lease table {settings.lease_table}: {exc}")
    if problems:
        raise CheckFailed("AWS resources missing: " + "; ".join(problems))
    say(f"==> AWS ({settings.aws_endpoint_url or 'real AWS'}): streams {', '.join(notes)}")
    say(f"    buckets {', '.join(resources.buckets(settings))}; table {settings.lease_table}")


# --- step 3: generation -----------------------------------------------------------------------
@dataclass
class Snapshot:
    """What the services and files said before the run, to measure the run's own share."""

    ingestion: dict[str, int]
    consolidation_total: int
    file_sizes: dict[Path, int]


def category_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "categories").rglob("*.jsonl"))


def take_snapshot(api: Services, data_dir: Path) -> Snapshot:
    return Snapshot(
        ingestion=api.get(INGESTION, "/api/metrics")["counters"],
        consolidation_total=api.get(CONSOLIDATION, "/api/stats")["total"],
        file_sizes={path: path.stat().st_size for path in category_files(data_dir)},
    )


def run_generation(api: Services, opts: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Continuous generation with the anomaly triggered halfway; returns (stats, window)."""
    say(
        f"==> generating {opts.rate} records/s for {opts.duration:g} s "
        f"(every {opts.interval:g} s x {opts.per_interval}), {opts.anomaly} triggered at "
        f"{opts.duration / 2:g} s"
    )
    api.post(
        ORCHESTRATOR,
        "/api/continuous/start",
        {
            "interval_seconds": opts.interval,
            "logs_per_interval": opts.per_interval,
            "duration_seconds": opts.duration,
        },
    )
    began = time.monotonic()
    window: dict[str, Any] | None = None
    next_note = began + PROGRESS_EVERY
    deadline = began + opts.duration + 60.0
    while True:
        time.sleep(0.5)
        now = time.monotonic()
        if window is None and now - began >= opts.duration / 2:
            window = trigger_anomaly(api, opts)
        stats = api.get(ORCHESTRATOR, "/api/continuous/stats")
        if not stats["running"] and window is not None:
            return stats, window
        if now > deadline:
            raise CheckFailed(f"continuous generation still running after {now - began:.0f} s")
        if now >= next_note:
            say(
                f"  {now - began:4.0f}s: {stats['records_produced']} records produced "
                f"({stats['measured_rate']:.1f}/s)"
            )
            next_note = now + PROGRESS_EVERY


def trigger_anomaly(api: Services, opts: Options) -> dict[str, Any]:
    # Long enough for several ticks to fall inside it, also on a short run.
    duration = max(3.0, opts.duration / 3)
    body = {"anomaly_type": opts.anomaly, "intensity": 90, "duration_seconds": duration}
    result = api.post(ORCHESTRATOR, "/api/anomaly/trigger", body)
    window = result["window"]
    say(
        f"  triggered {window['anomaly_type']} ({result['mode']}): window {window['id']}, "
        f"scenario {window['scenario_id']}, services {', '.join(window['services'])}"
    )
    return window


def check_generation(stats: dict[str, Any]) -> list[str]:
    say(
        f"==> generation done: {stats['records_produced']} of {stats['records_requested']} "
        f"records produced, {stats['records_failed']} failed, measured "
        f"{stats['measured_rate']:.1f}/s"
    )
    problems = []
    if stats["records_failed"] or stats["records_produced"] < stats["records_requested"]:
        problems.append(
            f"the generator produced {stats['records_produced']} of "
            f"{stats['records_requested']} records ({stats['records_failed']} failed; "
            f"last error: {stats.get('last_error')})"
        )
    return problems


# --- step 4: what ingestion accepted ----------------------------------------------------------
def read_accepted(data_dir: Path, before: dict[Path, int]) -> Accepted:
    """Records appended to the category files since ``before`` (``anomaly/`` holds copies)."""
    accepted = Accepted()
    for path in category_files(data_dir):
        with open(path, "rb") as handle:
            handle.seek(before.get(path, 0))
            chunk = handle.read()
        # A line still being appended has no newline yet; it belongs to no finished batch.
        for line in chunk[: chunk.rfind(b"\n") + 1].splitlines():
            record = orjson.loads(line)
            if path.parent.name == ANOMALY_FOLDER:
                accepted.anomaly_copies.add(record["event_id"])
            else:
                accepted.records[record["event_id"]] = record
    return accepted


def wait_for_ingestion(
    api: Services, before: Snapshot, data_dir: Path, produced: int
) -> tuple[Accepted, dict[str, int], list[str]]:
    """Until the category files hold every record the counters say was accepted (bounded)."""
    deadline = time.monotonic() + 30.0
    while True:
        counters = api.get(INGESTION, "/api/metrics")["counters"]
        delta = {k: v - before.ingestion.get(k, 0) for k, v in counters.items()}
        accepted = read_accepted(data_dir, before.file_sizes)
        if len(accepted.records) >= delta["accepted"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    problems = []
    if delta["accepted"] < produced:
        problems.append(
            f"the generator produced {produced} records but ingestion accepted {delta['accepted']}"
        )
    if len(accepted.records) != delta["accepted"] or delta.get("category_write_failures"):
        problems.append(
            f"category files: {len(accepted.records)} new records, ingestion counted "
            f"{delta['accepted']} accepted ({delta.get('category_write_failures', 0)} "
            f"category write failures); is DATA_DIR ({data_dir}) the Ingestion Interface's?"
        )
    if not accepted.records:
        raise CheckFailed(
            f"no accepted records in {data_dir / 'categories'}; set DATA_DIR to the Ingestion "
            "Interface's data directory" + ("; " + "; ".join(problems) if problems else "")
        )
    return accepted, delta, problems


# --- step 5: the lake -------------------------------------------------------------------------
class Lake:
    """The objects of the run's partitions, each read once (keys are deterministic, and a rewrite
    by a consumer replay has the same bytes)."""

    def __init__(self, s3: Any, since: datetime) -> None:
        self.s3 = s3
        self.since = since - CLOCK_MARGIN
        self.lines: dict[str, list[LakeLine]] = defaultdict(list)  # bucket -> lines
        self._read: dict[str, str] = {}  # bucket/key -> ETag
        self.dead_letters: list[LakeLine] = []

    def refresh(self, bucket: str, prefixes: Iterable[str]) -> None:
        for key_prefix in sorted(prefixes):
            for obj in list_objects(self.s3, bucket, key_prefix):
                if obj["LastModified"] >= self.since:
                    self._read_object(bucket, obj)

    def _read_object(self, bucket: str, obj: dict[str, Any]) -> None:
        key = obj["Key"]
        if self._read.get(f"{bucket}/{key}") == obj["ETag"]:
            return
        if f"{bucket}/{key}" in self._read:
            # Rewritten with other bytes: forget the old lines, keep the new ones.
            self.lines[bucket] = [ln for ln in self.lines[bucket] if ln.key != key]
        body = read_lines(self.s3, bucket, key).require_complete()
        target = self.dead_letters if is_hidden(key) else self.lines[bucket]
        target.extend(LakeLine(key, orjson.loads(line)) for line in body.lines)
        self._read[f"{bucket}/{key}"] = obj["ETag"]

    def event_ids(self, bucket: str) -> Counter[str]:
        return Counter(line.record.get("event_id") for line in self.lines[bucket])


def hour_prefixes(moments: Iterable[datetime]) -> set[str]:
    return {hour_of(m) for m in moments}


def wait_for_lake(
    lake: Lake, settings: Settings, accepted: Accepted, timeout: float, began: datetime
) -> None:
    """Poll the run's partitions until every accepted record is there, or ``timeout``."""
    specs = resources.streams(settings)
    wanted = {spec.kind: accepted.ids_of_kind(spec.kind) for spec in specs}
    prefixes = {spec.kind: set() for spec in specs}
    for record in accepted.records.values():
        prefixes[record["kind"]].add(expected_prefix(record))
    hours = hour_prefixes([began - CLOCK_MARGIN, datetime.now(UTC)])
    dead_prefixes = {prefix(dead_letter_partition(s.name, h)) for s in specs for h in hours}
    say(f"==> waiting up to {timeout:.0f} s for the consumer to write them to S3")
    start = time.monotonic()
    next_note = start
    while True:
        for spec in specs:
            lake.refresh(spec.bucket, prefixes[spec.kind])
        counts = {
            spec.kind: len(wanted[spec.kind] & set(lake.event_ids(spec.bucket))) for spec in specs
        }
        done = all(counts[kind] == len(ids) for kind, ids in wanted.items())
        now = time.monotonic()
        if done or now - start > timeout or now >= next_note:
            shown = ", ".join(f"{kind} {counts[kind]}/{len(wanted[kind])}" for kind in wanted)
            say(f"  {now - start:4.0f}s: in S3: {shown}")
            next_note = now + PROGRESS_EVERY
        if done or now - start > timeout:
            break
        time.sleep(1.0)
    for spec in specs:
        lake.refresh(spec.bucket, dead_prefixes)


def compare(
    lake: Lake, settings: Settings, accepted: Accepted
) -> tuple[list[KindResult], list[str]]:
    results, problems = [], []
    for spec in resources.streams(settings):
        ids = accepted.ids_of_kind(spec.kind)
        seen = lake.event_ids(spec.bucket)
        mine = [line for line in lake.lines[spec.bucket] if line.record.get("event_id") in ids]
        result = KindResult(
            spec,
            accepted=len(ids),
            found=len(ids & set(seen)),
            missing=len(ids - set(seen)),
            duplicated=sum(1 for eid in ids if seen[eid] > 1),
            misplaced=sum(
                1 for line in mine if partition_of(line.key) != expected_prefix(line.record)
            ),
            objects=len({line.key for line in mine}),
            partitions=len({partition_of(line.key) for line in mine}),
        )
        results.append(result)
        problems += kind_problems(result, lake, ids)
    if any(r.missing for r in results):
        problems.append(consumer_diagnosis(settings))
    return results, problems


def consumer_diagnosis(settings: Settings) -> str:
    """Why records may be missing from S3, as far as the consumer's health says."""
    consumer = BY_NAME[CONSUMER]
    result = probe(consumer.health_url(settings), timeout=5.0)
    log = settings.run_dir.resolve() / "logs" / f"{CONSUMER}.log"
    if result.healthy:
        return (
            f"the Kinesis consumer ({CONSUMER}) is healthy but has not written them; see "
            f"{consumer.health_url(settings)} (owned_shards) and its log {log}"
        )
    return (
        f"the Kinesis consumer ({CONSUMER}) is not healthy ({result.detail} at "
        f"{consumer.health_url(settings)}): it stopped or failed during the run; see its log {log}"
    )


def kind_problems(result: KindResult, lake: Lake, ids: set[str]) -> list[str]:
    spec, problems = result.spec, []
    if not result.accepted:
        problems.append(f"{spec.kind}: ingestion accepted no {spec.kind} records during the run")
    if result.missing:
        example = sorted(ids - set(lake.event_ids(spec.bucket)))[0]
        problems.append(
            f"{spec.kind}: {result.missing} of {result.accepted} accepted records are not in "
            f"s3://{spec.bucket} (e.g. event_id {example})"
        )
    if result.duplicated:
        problems.append(f"{spec.kind}: {result.duplicated} records are in s3://{spec.bucket} twice")
    if result.misplaced:
        problems.append(
            f"{spec.kind}: {result.misplaced} records sit outside the partition of their service "
            "and UTC hour"
        )
    return problems


def check_dead_letters(lake: Lake) -> list[str]:
    """Every record of the run is canonical, so any dead letter written meanwhile is a fault."""
    if not lake.dead_letters:
        return []
    reasons = Counter(str(line.record.get("reason")) for line in lake.dead_letters)
    return [f"{len(lake.dead_letters)} dead letters written during the run: {dict(reasons)}"]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def inside(timestamp: str, window: dict[str, Any], slack: timedelta) -> bool:
    end = parse_time(window["end"] or window["planned_end"])
    return parse_time(window["start"]) - slack <= parse_time(timestamp) <= end + slack


def final_window(api: Services, window_id: str) -> dict[str, Any]:
    """The window as the ground truth has it now (closed, with its real end, if it ended)."""
    total = api.get(ORCHESTRATOR, "/api/ground-truth?limit=1")["total"]
    page = api.get(ORCHESTRATOR, f"/api/ground-truth?limit=1000&offset={max(0, total - 1000)}")
    for window in page["items"]:
        if window["id"] == window_id:
            return window
    raise CheckFailed(f"the triggered window {window_id} is not in GET /api/ground-truth")


def check_anomaly(
    lake: Lake, window: dict[str, Any], accepted: Accepted, slack: timedelta
) -> tuple[str, list[str]]:
    labelled = [
        line.record
        for lines in lake.lines.values()
        for line in lines
        if line.record.get("event_id") in accepted.records
        and line.record.get("scenario_id") == window["scenario_id"]
        and line.record.get("anomaly_type") == window["anomaly_type"]
    ]
    problems = []
    if not labelled:
        problems.append(
            f"no record in S3 carries the triggered anomaly ({window['anomaly_type']}, "
            f"scenario {window['scenario_id']})"
        )
    unlabelled = [r for r in labelled if r.get("is_anomaly") is not True]
    if unlabelled:
        problems.append(
            f"{len(unlabelled)} records of the triggered anomaly have is_anomaly != true"
        )
    not_copied = [r for r in labelled if r["event_id"] not in accepted.anomaly_copies]
    if not_copied:
        problems.append(
            f"{len(not_copied)} records of the triggered anomaly are missing from the category "
            f"files' {ANOMALY_FOLDER}/ folder"
        )
    outside = [r for r in labelled if not inside(r["timestamp"], window, slack)]
    if outside:
        problems.append(
            f"{len(outside)} records of the triggered anomaly lie outside its ground-truth window "
            f"{window['start']} .. {window['end'] or window['planned_end']} "
            f"(e.g. {outside[0]['event_id']} at {outside[0]['timestamp']})"
        )
    services = sorted({r["service"] for r in labelled})
    summary = (
        f"{len(labelled)} records in S3 labelled {window['anomaly_type']} / "
        f"{window['scenario_id']} ({', '.join(services) or '-'}), "
        f"{len(labelled) - len(not_copied)} in {ANOMALY_FOLDER}/"
    )
    return summary, problems


def wait_for_consolidation(
    api: Services, before: Snapshot, accepted_count: int, timeout: float
) -> tuple[int, dict[str, int], list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        received = api.get(CONSOLIDATION, "/api/stats")["total"] - before.consolidation_total
        if received >= accepted_count or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    counters = api.get(INGESTION, "/api/metrics")["counters"]
    lost = {
        k: counters.get(k, 0) - before.ingestion.get(k, 0)
        for k in ("consolidation_failed", "consolidation_dropped")
    }
    problems = []
    if received < accepted_count or any(lost.values()):
        problems.append(
            f"Log Consolidation received {received} of {accepted_count} accepted records "
            f"(ingestion counted {lost})"
        )
    return received, lost, problems


# --- output -----------------------------------------------------------------------------------
def print_samples(lake: Lake, settings: Settings, accepted: Accepted) -> None:
    say("\n==> sample records from the lake")
    for spec in resources.streams(settings):
        mine = [
            ln for ln in lake.lines[spec.bucket] if ln.record.get("event_id") in accepted.records
        ]
        anomalous = [ln for ln in mine if ln.record.get("is_anomaly")]
        for line in mine[:1] + anomalous[:1]:
            text = orjson.dumps(line.record).decode()
            if len(text) > SAMPLE_CHARS:
                text = text[:SAMPLE_CHARS] + "..."
            say(f"  s3://{spec.bucket}/{line.key}\n    {text}")


def table(rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for row in cells:
        padded = (
            c.rjust(w) if c.isdigit() else c.ljust(w) for c, w in zip(row, widths, strict=True)
        )
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def print_summary(results: list[KindResult], checks: list[tuple[str, str, bool]]) -> None:
    header = ["kind", "stream", "bucket", "accepted", "in S3", "missing", "duplicated"]
    rows: list[list[object]] = [[*header, "misplaced", "objects", "partitions"]]
    for r in results:
        counts = (r.accepted, r.found, r.missing, r.duplicated, r.misplaced, r.objects)
        rows.append([r.spec.kind, r.spec.name, r.spec.bucket, *counts, r.partitions])
    say("\n==> summary")
    say(table(rows))
    say("")
    for name, detail, ok in checks:
        say(f"{'ok' if ok else 'FAIL':<4}  {name}: {detail}")


# --- main -------------------------------------------------------------------------------------
def run(settings: Settings, opts: Options) -> list[str]:
    """Every step in order; returns the problems found (empty = the pipeline works)."""
    fleet = Fleet(settings)
    settings = settings.model_copy(update={"aws_endpoint_url": fleet.aws_endpoint()})
    services = ensure_fleet(fleet, settings)
    check_health(services, settings)
    say(f"==> fleet: {len(services)} services healthy ({', '.join(s.name for s in services)})")
    check_resources(settings)

    api = Services(settings)
    data_dir = settings.data_dir.resolve()
    before = take_snapshot(api, data_dir)
    began = datetime.now(UTC)
    stats, window = run_generation(api, opts)
    problems = check_generation(stats)
    accepted, delta, ingestion_problems = wait_for_ingestion(
        api, before, data_dir, stats["records_produced"]
    )
    say(
        f"==> ingestion accepted {delta['accepted']} records; {len(accepted.records)} of them "
        f"appended to the category files under {data_dir / 'categories'}"
    )

    lake = Lake(aws.client("s3", settings), began)
    wait_for_lake(lake, settings, accepted, opts.flush_timeout, began)
    results, lake_problems = compare(lake, settings, accepted)
    dead_problems = check_dead_letters(lake)
    window = final_window(api, window["id"])
    # A tick's records carry times within its interval, so a window's last tick may overrun it.
    slack = timedelta(seconds=opts.interval + 1)
    anomaly_summary, anomaly_problems = check_anomaly(lake, window, accepted, slack)
    received, lost, consolidation_problems = wait_for_consolidation(
        api, before, delta["accepted"], timeout=30.0
    )

    print_samples(lake, settings, accepted)
    in_lake = sum(r.found - r.duplicated for r in results)
    checks = [
        (
            "accepted records in S3 exactly once, in their partition",
            f"{in_lake} of {len(accepted.records)}",
            not lake_problems,
        ),
        (
            "category files (records appended during the run)",
            f"{len(accepted.records)}; ingestion counted {delta['accepted']} accepted",
            not ingestion_problems,
        ),
        (
            "Log Consolidation received (/api/stats total)",
            f"+{received}; ingestion counted {lost['consolidation_failed']} failed, "
            f"{lost['consolidation_dropped']} dropped",
            not consolidation_problems,
        ),
        (
            f"anomaly {window['anomaly_type']} (window {window['id']})",
            anomaly_summary,
            not anomaly_problems,
        ),
        ("dead letters written during the run", str(len(lake.dead_letters)), not dead_problems),
    ]
    print_summary(results, checks)
    return (
        problems
        + ingestion_problems
        + lake_problems
        + dead_problems
        + anomaly_problems
        + consolidation_problems
    )


def parse_args(
    argv: Sequence[str] | None, settings: Settings, prog: str = "./test-pipeline.sh"
) -> Options:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="End-to-end check: generate records, then prove every record ingestion "
        "accepted is in the S3 lake exactly once, in the right partition.",
    )
    add = parser.add_argument
    add("--duration", type=float, default=30.0, help="seconds of generation (default 30)")
    add("--rate", type=int, default=100, help="records per second (default 100)")
    add("--interval", type=float, default=1.0, help="seconds between ticks (default 1)")
    add("--anomaly", default="cpu_spike", help="anomaly type triggered halfway (cpu_spike)")
    add(
        "--flush-timeout",
        type=float,
        default=None,
        help="seconds to wait for the lake (default 60 + 2 x FLUSH_MAX_AGE_SECONDS)",
    )
    args = parser.parse_args(argv)
    if not 2 <= args.duration <= 3600:
        parser.error("--duration must be between 2 and 3600 seconds")
    if not 1 <= args.rate <= 10_000:
        parser.error("--rate must be between 1 and 10000 records/s")
    if not 0.05 <= args.interval <= 60:
        parser.error("--interval must be between 0.05 and 60 seconds")
    if args.flush_timeout is not None and not 1 <= args.flush_timeout <= 3600:
        parser.error("--flush-timeout must be between 1 and 3600 seconds")
    # The consumer writes a record at the latest FLUSH_MAX_AGE_SECONDS after reading it.
    flush_timeout = args.flush_timeout or 60.0 + 2 * settings.flush_max_age_seconds
    return Options(args.duration, args.rate, args.interval, args.anomaly, flush_timeout)


def main(argv: Sequence[str] | None = None, prog: str = "./test-pipeline.sh") -> int:
    settings = Settings()
    opts = parse_args(argv, settings, prog)
    try:
        problems = run(settings, opts)
    except (CheckFailed, FleetError) as exc:
        problems = [str(exc)]
    except httpx.HTTPError as exc:
        problems = [f"a service stopped answering: {type(exc).__name__}: {exc}"]
    if problems:
        say("\nFAIL: the pipeline check found problems:")
        for problem in problems:
            say(f"  - {problem}")
        return 1
    say("\nPASS: every record ingestion accepted is in the lake exactly once, in its partition")
    return 0


if __name__ == "__main__":
    sys.exit(main())
