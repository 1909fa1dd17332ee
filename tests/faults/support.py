"""The fault suite's fleet, its bookkeeping by event_id, and the load report every case prints.

Topology (all on private ports, one fleet per test module)::

    orchestrator -> synthesis -> [ingest tap] -> ingestion -> [AWS proxy] -> emulator
                                                 consumer  -> [AWS proxy] -> emulator

- The *AWS proxy* (``FaultProxy``) sits between every service and the emulator: it injects
  PutRecords/GetRecords/S3 faults, and taking it away is an outage as the services see it while
  the emulator keeps its in-memory state.
- The *ingest tap* (``FaultProxy`` with an observer) sits between synthesis and ingestion and
  records, by ``event_id``, every record synthesis offered and every one ingestion's answer
  (a 2xx, or a 503 that names records it accepted) says it accepted. It is the ground truth a
  case is checked against.
- The lake is read straight from the emulator, never through the faulty proxy.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from stages.common import aws, resources
from stages.common.config import Settings
from stages.common.kpl import deaggregate
from stages.common.lake import is_hidden, list_objects, read_lines
from tests.ops.support import FleetRun, alive, private_fleet
from tests.support.fault_proxy import FaultProxy
from tests.support.lake import ConsumerProcess
from tests.support.processes import Process, base_env, free_port, wait_http_ok

BUCKETS = {"log": "md-raw-logs", "metric": "md-raw-metrics", "apm": "md-raw-apm"}
KINDS = tuple(BUCKETS)
INGEST_PATH = "/api/ingest/batch"
CONSUMER = "kinesis-consumer"
# Short leases so that a SIGKILLed consumer's shards are taken over within seconds.
LEASE_SECONDS = "3"
# All reports of the session, printed at its end by tests/faults/conftest.py.
REPORTS: list[LoadReport] = []


class IngestTap:
    """What synthesis offered the Ingestion Interface and what ingestion accepted, by event_id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.offered: dict[str, str] = {}  # event_id -> kind, since the last reset
        self.accepted: set[str] = set()
        self.everything: set[str] = set()  # every event_id ever offered, for the whole module
        self.answers: Counter[int] = Counter()

    def observe(self, method: str, path: str, body: bytes, status: int, answer: bytes) -> None:
        if method != "POST" or not path.startswith(INGEST_PATH):
            return
        try:
            records = orjson.loads(body)["records"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        ids = {r["event_id"]: r["kind"] for r in records if isinstance(r, dict) and "event_id" in r}
        taken = _accepted_ids(status, answer) if status else set()
        if taken is None:  # a 2xx that does not name records: all of them
            taken = set(ids)
        with self._lock:
            self.answers[status] += 1
            self.offered.update(ids)
            self.everything.update(ids)
            self.accepted.update(i for i in ids if i in taken)

    def reset(self) -> None:
        with self._lock:
            self.offered, self.accepted, self.answers = {}, set(), Counter()

    def snapshot(self) -> tuple[dict[str, str], set[str]]:
        with self._lock:
            return dict(self.offered), set(self.accepted)


def _accepted_ids(status: int, answer: bytes) -> set[str] | None:
    """The event_ids ingestion's answer calls accepted (per record, in a 2xx and in a 503);
    None for a 2xx that does not say."""
    ok = 200 <= status < 300
    try:
        parsed = orjson.loads(answer)
    except orjson.JSONDecodeError:
        parsed = None
    outcome = parsed if ok else parsed.get("detail") if isinstance(parsed, dict) else None
    results = outcome.get("results") if isinstance(outcome, dict) else None
    if not isinstance(results, list):
        return None if ok else set()
    return {r["event_id"] for r in results if r.get("status") == "accepted"}


class Lake:
    """Every line of the three buckets, read incrementally (an object is fetched once per key:
    a key is only ever rewritten with the same bytes)."""

    def __init__(self, settings: Settings) -> None:
        self.s3 = aws.client("s3", settings)
        self._ids_by_key: dict[tuple[str, str], list[str]] = {}

    def refresh(self) -> Counter[str]:
        for bucket in BUCKETS.values():
            for obj in list_objects(self.s3, bucket):
                key = (bucket, obj["Key"])
                if key in self._ids_by_key or is_hidden(obj["Key"]):
                    continue
                self._ids_by_key[key] = self._read(bucket, obj["Key"])
        return Counter(i for ids in self._ids_by_key.values() for i in ids)

    def _read(self, bucket: str, key: str) -> list[str]:
        body = read_lines(self.s3, bucket, key).require_complete()
        return [orjson.loads(line)["event_id"] for line in body.lines]


@dataclass
class KindRow:
    kind: str
    offered: int
    accepted: int
    in_s3: int
    duplicated: int
    lost: int
    not_accepted_in_s3: int

    @property
    def loss_pct(self) -> float:
        return 100.0 * self.lost / self.accepted if self.accepted else 0.0


@dataclass
class LoadReport:
    case: str
    rows: list[KindRow]
    generated: int  # synthesis_records_total during the case
    forwarded: int  # synthesis_forwarded_records_total: records ingestion's answers accepted
    failed_reported: int  # synthesis_forward_failed_records_total: reported to the orchestrator
    resent: int  # synthesis_resent_records_total: failed ones sent again as the same records
    unexpected: int  # event_ids in S3 that synthesis never offered
    notes: list[str] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(row, name) for row in self.rows)

    def render(self) -> str:
        head = (
            f"{'kind':<7}{'offered':>9}{'accepted':>10}{'in S3':>9}{'duplicated':>12}"
            f"{'lost':>7}{'loss %':>8}{'not accepted, in S3':>21}"
        )
        lines = [f"=== load report: {self.case}", head]
        for r in [*self.rows, self._totals()]:
            lines.append(
                f"{r.kind:<7}{r.offered:>9}{r.accepted:>10}{r.in_s3:>9}{r.duplicated:>12}"
                f"{r.lost:>7}{r.loss_pct:>8.2f}{r.not_accepted_in_s3:>21}"
            )
        lines.append(
            f"synthesis: {self.generated} generated, {self.forwarded} accepted by ingestion, "
            f"{self.failed_reported} reported failed to the orchestrator, which retried under "
            f"the call's key: {self.resent} sent again as the same records, the rest made anew; "
            f"{self.unexpected} records in S3 never offered"
        )
        lines.extend(self.notes)
        return "\n".join(lines)

    def _totals(self) -> KindRow:
        return KindRow(
            "total",
            self.total("offered"),
            self.total("accepted"),
            self.total("in_s3"),
            self.total("duplicated"),
            self.total("lost"),
            self.total("not_accepted_in_s3"),
        )


def kinesis_event_ids(settings: Settings) -> Counter[str]:
    """Every event_id on the three streams (all shards, deaggregated), read from the start."""
    kinesis = aws.client("kinesis", settings)
    ids: Counter[str] = Counter()
    for spec in resources.streams(settings):
        for shard in kinesis.list_shards(StreamName=spec.name)["Shards"]:
            iterator = kinesis.get_shard_iterator(
                StreamName=spec.name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                for record in page["Records"]:
                    for user in deaggregate(record["Data"], record["PartitionKey"]):
                        ids[orjson.loads(user.data)["event_id"]] += 1
                if not page["Records"]:
                    break
                iterator = page.get("NextShardIterator")
    return ids


def prometheus_value(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def start_emulator_patiently(log_dir: Path, **env: str) -> tuple[Process, str]:
    """The emulator, given time to provision on a machine busy with other test runs."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "stages.emulator", "--port", str(port)]
    proc = Process(f"emulator-{port}", args, base_env(endpoint, **env), log_dir)
    wait_http_ok(f"{endpoint}/_localstack/health", proc, timeout=120)
    return proc, endpoint


class FaultFleet:
    """The whole fleet behind an AWS proxy, with synthesis talking to ingestion through a tap."""

    def __init__(self, root: Path) -> None:
        self.root = root
        logs = root / "logs"
        logs.mkdir()
        self.logs = logs
        self.emulator, self.upstream = start_emulator_patiently(logs, LOGS_STREAM_SHARDS="4")
        self.aws_proxy = FaultProxy(self.upstream, seed=6).start()
        self.tap = IngestTap()
        self.ingestion_port = free_port()  # where ingestion really listens
        self.run: FleetRun = private_fleet(
            root,
            AWS_ENDPOINT_URL=self.aws_proxy.url,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            LEASE_DURATION_SECONDS=LEASE_SECONDS,
            LOGS_STREAM_SHARDS="4",
        )
        # Everyone else reaches "ingestion" at the tap's port (INGESTION_PORT in the fleet env).
        tap_port = int(self.run.env["INGESTION_PORT"])
        self.ingest_tap = FaultProxy(
            f"http://127.0.0.1:{self.ingestion_port}", port=tap_port, observer=self.tap.observe
        ).start()
        self.settings = Settings(aws_endpoint_url=self.upstream)
        self.lake = Lake(self.settings)
        self.extra: list[Process] = []

    # --- processes ----------------------------------------------------------------------------
    def start(self) -> None:
        self.start_service("ingestion-interface")
        # The data path only: the orchestrator brings synthesis, pattern, state and
        # consolidation along.
        self.start_service("scenario-orchestrator", CONSUMER)

    def start_service(self, *names: str) -> None:
        extra = {}
        if names == ("ingestion-interface",):
            extra["INGESTION_PORT"] = str(self.ingestion_port)
        started = self.run.cli("start", *names, timeout=240, **extra)
        assert started.returncode == 0, started.stdout + started.stderr

    def sigkill(self, name: str) -> None:
        """SIGKILL a service this fleet started (its pid from the fleet's RUN_DIR)."""
        pid = self.run.pid(name)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.extra:
            proc.stop()
        self.run.cli("stop", "--timeout", "30")
        self.ingest_tap.stop()
        self.aws_proxy.stop()
        self.emulator.stop()

    def extra_consumer(self, name: str) -> ConsumerProcess:
        consumer = ConsumerProcess(
            self.aws_proxy.url, self.logs, name=name, LEASE_DURATION_SECONDS=LEASE_SECONDS
        )
        self.extra.append(consumer)
        return consumer

    def take_aws_away(self) -> int:
        port = self.aws_proxy.port
        self.aws_proxy.stop()
        return port

    def bring_aws_back(self, port: int) -> None:
        self.aws_proxy = FaultProxy(self.upstream, seed=6, port=port).start()

    # --- service APIs ----------------------------------------------------------------------------
    def url(self, service: str) -> str:
        if service == "ingestion-interface":
            return f"http://127.0.0.1:{self.ingestion_port}"
        return self.run.url(service)

    def get(self, service: str, path: str) -> Any:
        resp = httpx.get(self.url(service) + path, timeout=15)
        resp.raise_for_status()
        return resp.json()

    def synthesis_counters(self) -> dict[str, int]:
        url = self.url("log-synthesis")
        return {
            "generated": int(prometheus_value(url, "synthesis_records_total")),
            "forwarded": int(prometheus_value(url, "synthesis_forwarded_records_total")),
            "failed": int(prometheus_value(url, "synthesis_forward_failed_records_total")),
            "resent": int(prometheus_value(url, "synthesis_resent_records_total")),
        }

    def generate(self, seconds: float, per_second: int = 200) -> None:
        """Start continuous generation (half-second ticks); returns at once."""
        body = {
            "interval_seconds": 0.5,
            "logs_per_interval": max(1, per_second // 2),
            "duration_seconds": seconds,
        }
        resp = httpx.post(
            self.url("scenario-orchestrator") + "/api/continuous/start", json=body, timeout=30
        )
        assert resp.status_code in (200, 201), resp.text

    def wait_generation_done(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.get("scenario-orchestrator", "/api/continuous/stats")
            if not stats["running"]:
                return stats
            time.sleep(0.5)
        raise AssertionError(f"continuous generation still running after {timeout}s")

    # --- checking a case ------------------------------------------------------------------------
    def run_case(
        self,
        case: str,
        seconds: float,
        during: Callable[[], None],
        *,
        per_second: int = 200,
        drain_timeout: float = 120,
        after_generation: Callable[[], None] | None = None,
    ) -> LoadReport:
        """Generate for ``seconds`` while ``during()`` injects the fault, then (after
        ``after_generation()``) wait until every accepted record is in S3 or the timeout passes,
        and build the report."""
        self.tap.reset()
        before = self.synthesis_counters()
        self.generate(seconds, per_second)
        during()
        self.wait_generation_done(timeout=seconds + 120)
        if after_generation is not None:
            after_generation()
        offered, accepted = self.tap.snapshot()
        after = self.synthesis_counters()
        counts = self.wait_for_lake(accepted, drain_timeout)
        time.sleep(3)  # a late copy (a replay, a re-sent record) would land within a flush age
        counts = self.lake.refresh()
        report = self.report(case, offered, accepted, counts, before, after)
        lost = [i for i in accepted if i not in counts]
        if lost:
            report.notes.append(self.where_are(lost))
        REPORTS.append(report)
        print(report.render())
        return report

    def where_are(self, lost: list[str]) -> str:
        """Where lost records are: on Kinesis (the consumer's side) or not (ingestion's)."""
        on_kinesis = kinesis_event_ids(self.settings)
        spool = self.get("ingestion-interface", "/api/metrics")["spool_bytes"]
        found = sum(1 for i in lost if i in on_kinesis)
        return (
            f"of the {len(lost)} lost, {found} are on Kinesis; ingestion's spool holds {spool} "
            f"bytes; e.g. {lost[:3]}"
        )

    def wait_for_lake(self, accepted: set[str], timeout: float) -> Counter[str]:
        deadline = time.monotonic() + timeout
        while True:
            counts = self.lake.refresh()
            if all(i in counts for i in accepted) or time.monotonic() > deadline:
                return counts
            time.sleep(1)

    def report(
        self,
        case: str,
        offered: dict[str, str],
        accepted: set[str],
        counts: Counter[str],
        before: dict[str, int],
        after: dict[str, int],
    ) -> LoadReport:
        rows = []
        for kind in KINDS:
            ids = {i for i, k in offered.items() if k == kind}
            taken = ids & accepted
            rows.append(
                KindRow(
                    kind,
                    offered=len(ids),
                    accepted=len(taken),
                    in_s3=sum(1 for i in ids if i in counts),
                    duplicated=sum(1 for i in ids if counts.get(i, 0) > 1),
                    lost=sum(1 for i in taken if i not in counts),
                    not_accepted_in_s3=sum(1 for i in ids - taken if i in counts),
                )
            )
        unexpected = sum(1 for i in counts if i not in self.tap.everything)
        return LoadReport(
            case,
            rows,
            generated=after["generated"] - before["generated"],
            forwarded=after["forwarded"] - before["forwarded"],
            failed_reported=after["failed"] - before["failed"],
            resent=after["resent"] - before["resent"],
            unexpected=unexpected,
        )


def assert_no_loss_no_duplicates(report: LoadReport) -> None:
    """The guarantee every case ends with, plus the accounting of what was not accepted."""
    assert report.total("accepted") > 0, report.render()
    assert report.total("lost") == 0, report.render()
    assert report.total("duplicated") == 0, report.render()
    assert report.unexpected == 0, report.render()
    # What ingestion's answers call accepted is exactly what synthesis counted as forwarded, and
    # what it did not accept was reported as failed (the orchestrator retried the call), not
    # dropped.
    assert report.forwarded == report.total("accepted"), report.render()
    not_accepted = report.total("offered") - report.total("accepted")
    assert not_accepted <= report.failed_reported, report.render()
    # Every send of a record ends forwarded or failed; a record is sent once when made and
    # again each time it is re-sent under its key.
    sent = report.generated + report.resent
    assert sent == report.forwarded + report.failed_reported, report.render()
