"""S3 keys kept on disk (stages/emulator/s3_keys.py) answer like moto's in-memory store: listings
with every prefix, delimiter, page size and start point, bodies small and large, overwrites,
deletes and in-place changes, with a cache and a listing page far smaller than the bucket."""

from __future__ import annotations

import gc
import hashlib
import random
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.s3 import models as s3_models

from stages.emulator import files, moto_patches, s3_bodies, s3_keys

ACCOUNT = "123456789012"


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[s3_models.S3Backend]:
    moto_patches.apply(s3_memory_object_bytes=100)
    monkeypatch.setattr(files, "SEGMENT_BYTES", 2000)
    # apply() acts once per process: bodies over 100 bytes go to files for these tests only.
    monkeypatch.setattr(s3_models, "tempfile", s3_models.tempfile)
    monkeypatch.setattr(s3_bodies.ObjectBody, "_default", s3_bodies.ObjectBody._default)
    s3_bodies.keep_object_bodies_in(files.SegmentedStore(tmp_path), 100)
    monkeypatch.setattr(s3_keys, "CACHE_KEYS", 7)
    monkeypatch.setattr(s3_keys, "_LIST_PAGE", 5)
    backend = s3_models.S3Backend("us-east-1", ACCOUNT)
    backend.create_bucket("lake", "us-east-1")
    assert isinstance(backend.get_bucket("lake").keys, s3_keys.DiskKeyStore)
    yield backend
    # Bucket names are global to moto's process, as in S3.
    s3_models.s3_backends.bucket_accounts.pop("lake", None)


def names_of(items: list[object]) -> list[str]:
    return [item if isinstance(item, str) else item.name for item in items]  # type: ignore[attr-defined]


def expected_listing(
    stored: dict[str, bytes], prefix: str, delimiter: str | None, after: str | None
) -> list[str]:
    entries: set[str] = set()
    for name in stored:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if delimiter and delimiter in rest:
            entries.add(prefix + rest.split(delimiter)[0] + delimiter)
        else:
            entries.add(name)
    return sorted(e for e in entries if after is None or e > after)


def list_all(
    backend: s3_models.S3Backend,
    prefix: str,
    delimiter: str | None,
    page: int,
    start_after: str | None = None,
) -> list[str]:
    bucket = backend.get_bucket("lake")
    got: list[str] = []
    token = None
    while True:
        items, truncated, token = backend.list_objects_v2(
            bucket, prefix, delimiter, token, start_after if token is None else None, page
        )
        assert len(items) <= page
        got.extend(names_of(items))
        if not truncated:
            return got
        assert len(items) == page


def fill(backend: s3_models.S3Backend) -> dict[str, bytes]:
    rng = random.Random(5)
    stored: dict[str, bytes] = {}
    for service in ("api", "auth", "db"):
        for hour in ("00", "01", "13"):
            for n in range(4):
                stored[f"service={service}/hour={hour}/part-{n}.jsonl"] = rng.randbytes(
                    rng.choice((10, 400))  # in memory, and in a shared body file
                )
    for n in range(6):
        stored[f"top-{n}"] = rng.randbytes(300)
    stored["service=api"] = b"a key that is also a folder's start"
    for name, body in stored.items():
        backend.put_object("lake", name, body)
    return stored


def test_listings_match_the_in_memory_semantics(backend: s3_models.S3Backend) -> None:
    stored = fill(backend)
    # Overwrites and deletes, with most keys already written back out of the cache.
    stored["top-2"] = b"overwritten, now small"
    backend.put_object("lake", "top-2", stored["top-2"])
    stored["service=db/hour=00/part-1.jsonl"] = b"y" * 500
    backend.put_object(
        "lake", "service=db/hour=00/part-1.jsonl", stored["service=db/hour=00/part-1.jsonl"]
    )
    for gone in ("top-4", "service=auth/hour=13/part-3.jsonl"):
        backend.delete_object("lake", gone)
        del stored[gone]

    for prefix in ("", "service=", "service=api", "service=api/", "service=db/hour=00/", "zz"):
        for delimiter in (None, "/", "="):
            for page in (1, 3, 1000):
                want = expected_listing(stored, prefix, delimiter, None)
                assert list_all(backend, prefix, delimiter, page) == want, (prefix, delimiter, page)
            for start_after in ("service=api/hour=01/", "service=auth", "top-1", "a", "zzz"):
                want = expected_listing(stored, prefix, delimiter, start_after)
                assert list_all(backend, prefix, delimiter, 4, start_after) == want
    bucket = backend.get_bucket("lake")
    assert backend.list_objects_v2(bucket, "", None, None, None, 0) == ([], False, None)
    # ListObjects (v1) goes through moto's own code over the same store.
    keys, folders, _, _ = backend.list_objects(bucket, "service=", "/", None, None)
    assert sorted(folders) == ["service=api/", "service=auth/", "service=db/"]
    assert names_of(list(keys)) == ["service=api"]
    assert len(bucket.keys) == len(stored)


def test_bodies_and_metadata_read_back_after_the_cache_let_them_go(
    backend: s3_models.S3Backend,
) -> None:
    stored = fill(backend)
    for name, body in stored.items():
        key = backend.get_object("lake", name)
        assert key is not None
        assert key.value == body
        assert key.size == len(body)
        assert key.etag.strip('"') == hashlib.md5(body).hexdigest()
    # A change moto makes in place on a fetched key survives the key leaving the cache.
    key = backend.get_object("lake", "top-0")
    key.set_metadata({"x-amz-meta-owner": "lake-team"})
    for name in stored:
        backend.get_object("lake", name)
    assert backend.get_object("lake", "top-0").metadata["x-amz-meta-owner"] == "lake-team"
    assert backend.head_object("lake", "top-5").size == 300  # type: ignore[union-attr]
    assert backend.get_object("lake", "top-5").value[100:110] == stored["top-5"][100:110]
    backend.delete_object("lake", "top-5")
    assert backend.get_object("lake", "top-5") is None
    assert "top-5" not in backend.get_bucket("lake").keys


def test_a_body_file_is_freed_once_no_stored_object_refers_to_it(
    backend: s3_models.S3Backend,
) -> None:
    for n in range(6):  # 400 bytes each: five to a file of 2,000 bytes, the sixth starts a new one
        backend.put_object("lake", f"k{n}", bytes([n]) * 400)
    first = backend.get_object("lake", "k0")._value_buffer.handle()[1]  # type: ignore[union-attr]
    first_file = weakref.ref(first)
    del first
    for n in range(8):  # push every key out of the cache
        backend.put_object("lake", f"other-{n}", b"small")
    for n in range(4):
        backend.put_object("lake", f"k{n}", b"replaced")  # overwritten
    gc.collect()
    assert first_file() is not None  # k4 is still in it
    backend.delete_object("lake", "k4")
    gc.collect()
    assert first_file() is None  # closed, and being unlinked, its space is returned
    assert backend.get_object("lake", "k0").value == b"replaced"  # type: ignore[union-attr]
    assert backend.get_object("lake", "k5").value == bytes([5]) * 400  # type: ignore[union-attr]


@pytest.mark.parametrize("size", [50, 5000], ids=["in-memory", "in-a-file"])
def test_a_get_while_the_etag_is_computed_reads_the_whole_body(
    backend: s3_models.S3Backend, size: int
) -> None:
    """moto computes an object's ETag on first use (the PUT's own answer, or the first GET) and
    reads its body for it; a GET of the same object at that moment must still get every byte,
    not an empty body under the object's checksum."""
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    key = backend.put_object("lake", "raced", body)
    # A second of racing, longer (up to 30 s) if a loaded machine has not done 100 reads by then.
    began = time.monotonic()
    done = threading.Event()
    short: list[int] = []
    wrong_etags: list[str] = []
    reads = 0

    def compute_etags() -> None:
        while not done.is_set():
            key._etag = None
            if key.etag != f'"{hashlib.md5(body).hexdigest()}"':
                wrong_etags.append(key.etag)

    racer = threading.Thread(target=compute_etags, daemon=True)
    racer.start()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, as a loaded server does
    try:
        while (elapsed := time.monotonic() - began) < 1.0 or (reads <= 100 and elapsed < 30):
            got = backend.get_object("lake", "raced").value  # type: ignore[union-attr]
            reads += 1
            if got != body:
                short.append(len(got))
    finally:
        done.set()
        sys.setswitchinterval(interval)
        racer.join(5)
    assert reads > 100
    assert short == [], f"{len(short)} of {reads} reads were short: {short[:5]} bytes"
    assert wrong_etags == []
