"""The corrections the embedded emulator makes to moto, applied once, in its process only.

Each concern has its module, whose docstring lists what it corrects and why:

- ``kinesis_model``: Kinesis semantics our guarantees depend on (concurrent puts, GetRecords'
  10 MiB page, SplitShard routing, retention) and records kept on disk (``kinesis_log``);
- ``files``: the append-only unlinked files that hold Kinesis records and S3 bodies;
- ``s3_bodies``: S3 object bodies in those files, read without a shared position, and ranged
  GETs that read only their range;
- ``s3_keys``: S3 key metadata on disk, and listings that read only what they answer;
- ``s3_digests``: PutObject refuses a body that does not match its checksum or Content-MD5;
- ``glue``: Glue's ``UpdateTable`` honours ``VersionId``;
- ``moto_core``: request handling and model tracking that cost CPU and memory on every call.
"""

from __future__ import annotations

from pathlib import Path

from stages.emulator import (
    files,
    glue,
    kinesis_model,
    moto_core,
    s3_bodies,
    s3_digests,
    s3_keys,
)

_applied = False


def apply(s3_memory_object_bytes: int, data_directory: Path | None = None) -> None:
    global _applied
    if _applied:
        return
    if data_directory is not None:
        data_directory.mkdir(parents=True, exist_ok=True)
    s3_bodies.install(files.SegmentedStore(data_directory), s3_memory_object_bytes)
    s3_keys.install(data_directory)
    s3_digests.install()
    kinesis_model.install(data_directory)
    moto_core.install()
    glue.apply()
    _applied = True
