"""Progress and model state of one service, checkpointed together in the models bucket.

A checkpoint is one gzipped JSON object: the service, the progress mark (the start of the last
bucket scored, epoch seconds), the rest of the progress (``progress.py``: the features table's
sequence number read up to, the buckets read, the buckets waiting for a replay), the generation
and the ensemble's whole state. Each save writes a
new key ``detection/checkpoints/<service>/<generation>.json.gz`` with ``If-None-Match: *``, so
two writers of the same generation cannot both win: the second gets :class:`CheckpointConflict`
and must not deliver what it scored. Loading takes the highest generation; the two newest are
kept, older ones deleted. Because mark and state move in one write, a restart resumes exactly
where the last checkpoint left off: no bucket is scored twice into the state, none is skipped.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import orjson
from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

PREFIX = "detection/checkpoints/"
KEEP_GENERATIONS = 2
FORMAT_VERSION = 1


class CheckpointConflict(Exception):
    """Another writer saved this generation first."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    service: str
    generation: int
    mark: float | None  # start of the last bucket scored (epoch seconds)
    state: dict[str, Any]  # ServiceEnsemble.state()
    size_bytes: int = 0  # gzipped
    progress: dict[str, Any] | None = None  # Progress.to_dict(); None in an older checkpoint


def _service_prefix(service: str) -> str:
    # Service names come from the data: quoted so that one can never reach another's keys.
    return f"{PREFIX}{quote(service, safe='')}/"


def _key(service: str, generation: int) -> str:
    return f"{_service_prefix(service)}{generation:012d}.json.gz"


class CheckpointStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def _generations(self, service: str) -> list[int]:
        found: list[int] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=_service_prefix(service)):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1].removesuffix(".json.gz")
                if name.isdigit():
                    found.append(int(name))
        return sorted(found)

    def services(self) -> list[str]:
        names: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=PREFIX, Delimiter="/"):
            for item in page.get("CommonPrefixes", []):
                names.append(unquote(item["Prefix"][len(PREFIX) :].rstrip("/")))
        return sorted(names)

    def load(self, service: str) -> Checkpoint | None:
        generations = self._generations(service)
        if not generations:
            return None
        generation = generations[-1]
        body = self.s3.get_object(Bucket=self.bucket, Key=_key(service, generation))["Body"].read()
        saved = orjson.loads(gzip.decompress(body))
        if saved.get("format") != FORMAT_VERSION or saved.get("service") != service:
            key = _key(service, generation)
            raise ValueError(f"checkpoint {key} is not one this release reads")
        return Checkpoint(
            service, generation, saved["mark"], saved["state"], len(body), saved.get("progress")
        )

    def save(
        self,
        service: str,
        generation: int,
        mark: float | None,
        state: dict[str, Any],
        progress: dict[str, Any] | None = None,
    ) -> int:
        """Write ``generation`` (the previous one + 1); returns its gzipped size in bytes."""
        document = {
            "format": FORMAT_VERSION,
            "service": service,
            "generation": generation,
            "mark": mark,
            "progress": progress,
            "state": state,
        }
        # Level 1: the random cut forest's JSON shrinks almost as well as at 6, in a third of
        # the CPU, and a checkpoint is written at every interval with new buckets.
        body = gzip.compress(orjson.dumps(document), compresslevel=1)
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=_key(service, generation),
                Body=body,
                ContentType="application/json",
                ContentEncoding="gzip",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
                raise CheckpointConflict(
                    f"checkpoint generation {generation} of {service} was written by another "
                    "process"
                ) from exc
            raise
        for old in self._generations(service)[:-KEEP_GENERATIONS]:
            self.s3.delete_object(Bucket=self.bucket, Key=_key(service, old))
        return len(body)
