"""The two ledgers the pipeline benchmark compares: what ingestion accepted, what S3 holds.

Both are read incrementally, so each benchmark step sees only the records of that step.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from stages.common.config import Settings
from stages.common.lake import is_hidden, list_objects, read_lines
from stages.common.resources import streams

# The Ingestion Interface writes anomalous records a second time under this folder.
ANOMALY_COPIES = "anomaly"


def buckets_by_kind(settings: Settings) -> dict[str, str]:
    return {spec.kind: spec.bucket for spec in streams(settings)}


def epoch_seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


class AcceptedLedger:
    """Event ids the Ingestion Interface accepted, from its category files under DATA_DIR.

    Ingestion appends a batch's lines before it answers, so once the generator's calls have
    returned, every accepted record is in a file. Only whole lines are consumed: a line being
    appended is read on the next call.
    """

    def __init__(self, categories_dir: Path) -> None:
        self.root = categories_dir
        self._offsets: dict[Path, int] = {}

    def new_ids(self) -> dict[str, set[str]]:
        ids: dict[str, set[str]] = {}
        for path in sorted(self.root.rglob("*.jsonl")):
            if path.parent.name == ANOMALY_COPIES:
                continue
            for line in self._new_lines(path):
                record = orjson.loads(line)
                ids.setdefault(record["kind"], set()).add(record["event_id"])
        return ids

    def _new_lines(self, path: Path) -> list[bytes]:
        start = self._offsets.get(path, 0)
        with open(path, "rb") as handle:
            handle.seek(start)
            chunk = handle.read()
        whole = chunk[: chunk.rfind(b"\n") + 1]
        self._offsets[path] = start + len(whole)
        return whole.splitlines()


@dataclass
class LakeObject:
    bucket: str
    key: str
    stored_bytes: int
    seen_at: float  # wall clock when a listing first showed it (an upper bound)
    # (event_id, timestamp) of each line; the rest of a record is not needed and would make
    # the benchmark process hold hundreds of MB at high rates.
    records: list[tuple[str, str]]


@dataclass
class LakeDelta:
    """Objects that appeared since the previous read, grouped by kind."""

    objects: dict[str, list[LakeObject]] = field(default_factory=dict)

    def extend(self, other: LakeDelta) -> None:
        for kind, objects in other.objects.items():
            self.objects.setdefault(kind, []).extend(objects)

    def ids(self, kind: str) -> Counter[str]:
        return Counter(event_id for o in self.objects.get(kind, []) for event_id, _ in o.records)

    def record_count(self, kind: str) -> int:
        return sum(len(o.records) for o in self.objects.get(kind, []))

    def stored_bytes(self, kind: str) -> int:
        return sum(o.stored_bytes for o in self.objects.get(kind, []))


@dataclass(frozen=True)
class Listed:
    kind: str
    bucket: str
    key: str
    stored_bytes: int
    seen_at: float


class LakeWatcher:
    """Lists the raw buckets and reads every object it has not seen before.

    Listing and reading are separate so that a latency poller can list back to back (the
    listing is the moment of visibility) and read the objects afterwards. Dead letters
    (``_dead-letter/``) are counted apart: they are not records of the lake.
    """

    def __init__(self, s3: Any, buckets: dict[str, str]) -> None:
        self.s3 = s3
        self.buckets = buckets
        self.known: set[tuple[str, str]] = set()
        self.dead_letter_objects = 0

    def read_new(self) -> LakeDelta:
        return self.read(self.list_new())

    def list_new(self) -> list[Listed]:
        fresh = []
        for kind, bucket in self.buckets.items():
            keys = self._list_bucket(bucket)
            seen_at = time.time()
            fresh.extend(Listed(kind, bucket, key, size, seen_at) for key, size in keys)
        return fresh

    def read(self, listed: list[Listed]) -> LakeDelta:
        delta = LakeDelta({kind: [] for kind in self.buckets})
        for item in listed:
            delta.objects[item.kind].append(self._read(item))
        return delta

    def _list_bucket(self, bucket: str) -> list[tuple[str, int]]:
        fresh = []
        for obj in list_objects(self.s3, bucket):
            if (bucket, obj["Key"]) in self.known:
                continue
            self.known.add((bucket, obj["Key"]))
            if is_hidden(obj["Key"]):
                self.dead_letter_objects += 1
                continue
            fresh.append((obj["Key"], obj["Size"]))
        return fresh

    def _read(self, item: Listed) -> LakeObject:
        body = read_lines(self.s3, item.bucket, item.key).require_complete()
        records = []
        for line in body.lines:
            record = orjson.loads(line)
            records.append((record["event_id"], record["timestamp"]))
        return LakeObject(item.bucket, item.key, item.stored_bytes, item.seen_at, records)
