"""S3 object metadata on disk, so that the emulator's memory does not grow with the lake.

moto keeps a ``FakeKey`` per object in a dict for as long as the object exists (its
``__dict__``, an ACL with grants, a metadata dict, timestamps), whatever the body's size. A lake
of 1 s objects from a few shards and partitions gains tens of thousands an hour, so the
emulator grew with every record written to it, for ever.

Here each bucket's key store is a table in one SQLite database in an unlinked file under
``DATA_DIR/emulator`` (like the data files: invisible to ``ls``, freed when the process ends).
A row holds the pickled versions of one key; the body is not in it, only where it lives (a small
body is, as bytes). The newest ``CACHE_KEYS`` keys stay in memory as moto objects: moto changes
some of them in place after fetching them (ACLs, retention, restore status), so a key leaves
the cache by being written back, never by being dropped.

A shared body file (``s3_bodies``) is kept open as long as a stored version refers to it
(counted per file), and after that as long as a Python object does, so an overwritten or
deleted object's space is returned a whole file at a time, as before.

moto also gave every object it ever stored an entry in its tagging service (the object's ARN
and an empty dict), tags or not, overwritten or not; an object without tags now has none.

ListObjectsV2 reads the table in key order from the prefix or the continuation point and stops
after ``MaxKeys``, instead of loading and sorting every key of the bucket on each call.
"""

from __future__ import annotations

import io
import itertools
import os
import pickle
import sqlite3
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moto.s3 import models as s3_models
from moto.s3.utils import _VersionedKeyStore
from moto.utilities.utils import md5_hash

from stages.emulator import s3_bodies

# Keys whose moto objects stay in memory, newest use first.
CACHE_KEYS = 1000
# SQLite's own page cache, in KiB.
_PAGE_CACHE_KIB = 1024
_LIST_PAGE = 256


def _restore_key(cls: type, state: dict[str, Any]) -> Any:
    key = cls.__new__(cls)
    key.__dict__.update(state)
    key.lock = threading.Lock()
    return key


class _Pickler(pickle.Pickler):
    """Pickles key versions without their bodies' bytes when the bytes are in a shared file,
    and notes which files those are."""

    def __init__(self, file: io.BytesIO, database: KeyDatabase) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._database = database
        self.files: list[int] = []

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, s3_models.FakeKey):
            state = obj.__dict__.copy()
            state.pop("lock", None)
            return _restore_key, (type(obj), state)
        if isinstance(obj, s3_bodies.ObjectBody):
            handle = obj.handle()
            if handle[0] == "file":
                storage = handle[1]
                self._database.hold(storage)
                self.files.append(storage.ident)
                handle = ("file", storage.ident, handle[2], handle[3])
            return _restore_body, (self._database.ident, handle)
        return NotImplemented


_databases: dict[int, KeyDatabase] = {}


def _restore_body(database_ident: int, handle: tuple[Any, ...]) -> Any:
    database = _databases[database_ident]
    if handle[0] == "file":
        storage = database.storage(handle[1])
        handle = ("file", storage, handle[2], handle[3])
    return s3_bodies.ObjectBody.restore(handle)


class KeyDatabase:
    """One SQLite table of every bucket's keys, and the cache of recently used ones."""

    _idents = itertools.count(1)

    def __init__(self, directory: Path | None) -> None:
        self.ident = next(self._idents)
        _databases[self.ident] = self
        # Opened, then unlinked: the file lives as long as the connection (the process).
        handle, path = tempfile.mkstemp(prefix="emulator-s3-", suffix=".sqlite", dir=directory)
        os.close(handle)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        os.unlink(path)
        # Nothing here outlives the process, so nothing is worth a journal file or an fsync.
        self._db.execute("PRAGMA journal_mode=MEMORY")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}")
        self._db.execute(
            "CREATE TABLE keys (bucket INTEGER, name TEXT, deleted INTEGER, files TEXT,"
            " versions BLOB, PRIMARY KEY (bucket, name)) WITHOUT ROWID"
        )
        self._lock = threading.RLock()
        self._buckets = itertools.count(1)
        self._cache: OrderedDict[tuple[int, str], list[Any]] = OrderedDict()
        # Body file ident -> [the file, how many stored versions refer to it].
        self._files: dict[int, list[Any]] = {}
        self._held: dict[int, Any] = {}

    def new_bucket(self) -> int:
        return next(self._buckets)

    # --- body files ------------------------------------------------------------------------
    def hold(self, storage: Any) -> None:
        # Pickling runs under the lock; the file is counted once the row is written.
        self._held[storage.ident] = storage

    def storage(self, ident: int) -> Any:
        entry = self._files.get(ident)
        if entry is None:
            raise KeyError(f"body file {ident} is no longer held")
        return entry[0]

    def _count(self, files: list[int], step: int) -> None:
        for ident in files:
            entry = self._files.get(ident)
            if entry is None:
                entry = self._files[ident] = [self._held[ident], 0]
            entry[1] += step
            if entry[1] <= 0:
                del self._files[ident]

    # --- rows -------------------------------------------------------------------------------
    def _row_files(self, bucket: int, name: str) -> list[int] | None:
        row = self._db.execute(
            "SELECT files FROM keys WHERE bucket = ? AND name = ?", (bucket, name)
        ).fetchone()
        if row is None:
            return None
        return [int(ident) for ident in row[0].split(",") if ident]

    def _write(self, bucket: int, name: str, versions: list[Any]) -> None:
        buffer = io.BytesIO()
        pickler = _Pickler(buffer, self)
        pickler.dump(versions)
        old = self._row_files(bucket, name) or []
        deleted = bool(versions) and isinstance(versions[-1], s3_models.FakeDeleteMarker)
        self._db.execute(
            "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?)",
            (bucket, name, int(deleted), ",".join(map(str, pickler.files)), buffer.getvalue()),
        )
        # New references first, so that a file both lists share is never let go in between.
        self._count(pickler.files, 1)
        self._count(old, -1)
        self._held.clear()

    def _cache_put(self, bucket: int, name: str, versions: list[Any]) -> None:
        self._cache[(bucket, name)] = versions
        self._cache.move_to_end((bucket, name))
        while len(self._cache) > CACHE_KEYS:
            (old_bucket, old_name), old_versions = self._cache.popitem(last=False)
            # Written back: moto may have changed these objects since they were stored.
            self._write(old_bucket, old_name, old_versions)

    def load(self, bucket: int, name: str) -> list[Any]:
        with self._lock:
            versions = self._cache.get((bucket, name))
            if versions is not None:
                self._cache.move_to_end((bucket, name))
                return versions
            row = self._db.execute(
                "SELECT versions FROM keys WHERE bucket = ? AND name = ?", (bucket, name)
            ).fetchone()
            if row is None:
                raise KeyError(name)
            versions = pickle.loads(row[0])
            self._cache_put(bucket, name, versions)
            return versions

    def peek(self, bucket: int, name: str) -> list[Any]:
        """The versions of a key for reading only (listings): from the cache if there, else
        read without entering the cache, so a listing neither pushes out the keys in use nor
        pays for writing back those it pushes out."""
        with self._lock:
            versions = self._cache.get((bucket, name))
            if versions is not None:
                return versions
            row = self._db.execute(
                "SELECT versions FROM keys WHERE bucket = ? AND name = ?", (bucket, name)
            ).fetchone()
            if row is None:
                raise KeyError(name)
            return pickle.loads(row[0])

    def store(self, bucket: int, name: str, versions: list[Any]) -> None:
        with self._lock:
            self._write(bucket, name, versions)
            self._cache_put(bucket, name, versions)

    def delete(self, bucket: int, name: str) -> None:
        with self._lock:
            self._cache.pop((bucket, name), None)
            old = self._row_files(bucket, name)
            if old is None:
                raise KeyError(name)
            self._db.execute("DELETE FROM keys WHERE bucket = ? AND name = ?", (bucket, name))
            self._count(old, -1)

    def contains(self, bucket: int, name: str) -> bool:
        with self._lock:
            # Every cached key has its row (written before it is cached, dropped with it), and
            # a GET asks this first about the keys just written or read.
            if (bucket, name) in self._cache:
                return True
            row = self._db.execute(
                "SELECT 1 FROM keys WHERE bucket = ? AND name = ?", (bucket, name)
            ).fetchone()
            return row is not None

    def count(self, bucket: int) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM keys WHERE bucket = ?", (bucket,)
            ).fetchone()[0]

    def names(
        self, bucket: int, start: str = "", after: str | None = None, live_only: bool = False
    ) -> list[str]:
        """Up to a page of the bucket's key names in order, from ``start`` and after ``after``."""
        query = "SELECT name FROM keys WHERE bucket = ? AND name >= ?"
        parameters: list[Any] = [bucket, start]
        if after is not None:
            query += " AND name > ?"
            parameters.append(after)
        if live_only:
            query += " AND deleted = 0"
        with self._lock:
            rows = self._db.execute(
                f"{query} ORDER BY name LIMIT {_LIST_PAGE}", parameters
            ).fetchall()
        return [name for (name,) in rows]

    def all_names(self, bucket: int) -> Iterator[str]:
        """Every name of the bucket in order, a page at a time (the lock is not held between
        pages: keys written meanwhile may or may not be seen, as in S3)."""
        after: str | None = None
        while True:
            page = self.names(bucket, after=after)
            yield from page
            if len(page) < _LIST_PAGE:
                return
            after = page[-1]


class DiskKeyStore(_VersionedKeyStore):
    """moto's per-bucket versioned key store, with its contents in a ``KeyDatabase``.

    The dict this class inherits from stays empty; every method moto calls is answered from the
    database (``getlist``, ``get``, ``[key]`` and the iterators go through ``__sgetitem__`` and
    ``_self_iterable``).
    """

    def __init__(self, database: KeyDatabase) -> None:
        super().__init__()
        self._database = database
        self._bucket = database.new_bucket()

    def __sgetitem__(self, key: str) -> list[Any]:
        return self._database.load(self._bucket, key)

    def __setitem__(self, key: str, value: Any) -> None:
        try:
            current = [*self.__sgetitem__(key), value]
        except KeyError:
            current = [value]
        self._database.store(self._bucket, key, current)

    def setlist(self, key: Any, list_: Any) -> None:
        if isinstance(list_, tuple):
            list_ = list(list_)
        elif not isinstance(list_, list):
            list_ = [list_]
        for existing in self.getlist(key, []):
            if existing not in list_ and hasattr(existing, "dispose"):
                existing.dispose()
        self._database.store(self._bucket, key, list_)

    def pop(self, key: str) -> None:  # type: ignore[override]
        for version in self.getlist(key, []):
            version.dispose()
        self._database.delete(self._bucket, key)

    def __delitem__(self, key: str) -> None:
        self._database.delete(self._bucket, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._database.contains(self._bucket, key)

    def __len__(self) -> int:
        return self._database.count(self._bucket)

    def __bool__(self) -> bool:
        return bool(self._database.names(self._bucket))

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._database.all_names(self._bucket)))

    def keys(self) -> Any:  # type: ignore[override]
        return list(self._database.all_names(self._bucket))

    def _self_iterable(self) -> dict[str, Any]:
        return dict.fromkeys(self._database.all_names(self._bucket), ())

    def newest_for_listing(self, key: str) -> Any:
        return self._database.peek(self._bucket, key)[-1]

    def live_names(self, start: str, after: str | None) -> list[str]:
        """A page of names whose newest version is not a delete marker, in order."""
        return self._database.names(self._bucket, start, after, live_only=True)


_original_list_v2 = s3_models.S3Backend.list_objects_v2


def _list_objects_v2(
    self: s3_models.S3Backend,
    bucket: s3_models.FakeBucket,
    prefix: str | None,
    delimiter: str | None,
    continuation_token: str | None,
    start_after: str | None,
    max_keys: int,
) -> tuple[list[Any], bool, str | None]:
    """moto's ListObjectsV2 (same order, folders, tokens and truncation) reading only the keys
    it answers with, plus the folders it skips over."""
    keys = bucket.keys
    if not isinstance(keys, DiskKeyStore):
        return _original_list_v2(
            self, bucket, prefix, delimiter, continuation_token, start_after, max_keys
        )
    prefix = prefix or ""
    if continuation_token:
        limit = self._pagination_tokens.get(continuation_token)
    else:
        limit = start_after or None
    if max_keys == 0:
        return [], False, None
    results: list[Any] = []
    last_folder: str | None = None
    cursor = limit
    done = False
    while not done and len(results) <= max_keys:
        page = keys.live_names(prefix, cursor)
        done = len(page) < _LIST_PAGE
        for name in page:
            cursor = name
            if not name.startswith(prefix) or len(results) > max_keys:
                done = True  # past the prefix: every later name is too
                break
            rest = name[len(prefix) :]
            if delimiter and delimiter in rest:
                folder = prefix + rest.split(delimiter)[0] + delimiter
                if folder != last_folder and (limit is None or folder > limit):
                    results.append(folder)
                last_folder = folder
                # The names under a folder sort right after it: skip them in one step.
                cursor = folder + "\U0010ffff"
                done = False
                break
            try:
                results.append(keys.newest_for_listing(name))
            except KeyError:
                continue  # deleted since the page of names was read
    if len(results) > max_keys:
        results = results[:max_keys]
        item = results[-1]
        key_id = item if isinstance(item, str) else item.name
        token = md5_hash(key_id.encode("utf-8")).hexdigest()
        self._pagination_tokens[token] = key_id
        return results, True, token
    return results, False, None


_original_put_tagging = s3_models.S3Backend.put_object_tagging


def _put_object_tagging(
    self: s3_models.S3Backend, key: s3_models.FakeKey, tags: dict[str, str] | None
) -> s3_models.FakeKey:
    answer = _original_put_tagging(self, key, tags)
    if self.tagger.tags.get(key.arn) == {}:
        del self.tagger.tags[key.arn]
    return answer


def install(directory: Path | None) -> None:
    """Every bucket created from now on keeps its keys in one database under ``directory``."""
    database = KeyDatabase(directory)
    original_init = s3_models.FakeBucket.__init__

    def bucket_init(self: s3_models.FakeBucket, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.keys = DiskKeyStore(database)

    s3_models.FakeBucket.__init__ = bucket_init  # type: ignore[method-assign]
    s3_models.S3Backend.list_objects_v2 = _list_objects_v2  # type: ignore[method-assign]
    s3_models.S3Backend.put_object_tagging = _put_object_tagging  # type: ignore[method-assign]
