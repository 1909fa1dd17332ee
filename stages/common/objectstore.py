"""S3 through obstore (Rust's ``object_store``), where a request's CPU cost matters.

boto3 spends about 1.5 ms of CPU per small GET and pyarrow's S3 filesystem about 2.5 ms per PUT
(and asks twice: a HEAD before each read); obstore about 0.45 and 0.7 ms
(docs/performance.md, "One fold of the ETL service"). Two users:

- the ETL's ``RawReader`` (``stages/etl/reads.py``): every raw object's GET and the data files'
  PUTs;
- ``LakeFileIO``, the curated lake's pyiceberg FileIO (``stages.common.lakehouse``): an Iceberg
  commit writes a manifest, a manifest list and a table metadata file, and reads the current
  metadata and manifest list, about nine small requests per commit and three commits per fold.
  Those go through obstore, whole, in one request each; data files (large, streamed, read in
  ranges) stay on pyarrow's S3 filesystem.

obstore's errors are not ``OSError``s; here they become ``FileNotFoundError``,
``FileExistsError`` or ``OSError``, what pyiceberg and the callers of a FileIO expect.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import obstore
from obstore.auth.boto3 import Boto3CredentialProvider
from obstore.exceptions import AlreadyExistsError, BaseError, NotFoundError
from obstore.store import S3Store
from pyiceberg.io import InputFile, InputStream, OutputFile, OutputStream
from pyiceberg.io.pyarrow import PyArrowFileIO

from stages.common.aws import _shared_session, needs_path_style


def open_s3_store(
    bucket: str,
    *,
    endpoint: str | None,
    region: str,
    keys: tuple[str, str] | None = None,
    session_token: str | None = None,
) -> S3Store:
    """An obstore client of ``bucket``: on ``endpoint`` (AWS when None), with ``keys`` (and
    their ``session_token``) or else the usual AWS chain (environment, profile, instance role),
    refreshed as boto3 does."""
    options: dict[str, Any] = {"region": region}
    if endpoint:
        options["endpoint"] = endpoint
        options["virtual_hosted_style_request"] = not needs_path_style(endpoint)
    credentials: Any = None
    if keys is not None:
        options["access_key_id"], options["secret_access_key"] = keys
        if session_token:
            options["session_token"] = session_token
    else:
        credentials = Boto3CredentialProvider(_shared_session())
    return S3Store(
        bucket,
        client_options={"allow_http": bool(endpoint and endpoint.startswith("http://"))},
        credential_provider=credentials,
        **options,
    )


@contextmanager
def _as_os_errors(location: str) -> Iterator[None]:
    try:
        yield
    except NotFoundError as exc:
        raise FileNotFoundError(f"{location}: {exc}") from exc
    except AlreadyExistsError as exc:
        raise FileExistsError(f"{location}: {exc}") from exc
    except BaseError as exc:
        raise OSError(f"{location}: {exc}") from exc


class _WholeObject:
    """What an input and an output of one object share: its location, store, key and size."""

    def __init__(self, location: str, store: S3Store, key: str) -> None:
        super().__init__(location)  # type: ignore[call-arg]  # InputFile's or OutputFile's
        self._store = store
        self._key = key

    def __len__(self) -> int:
        with _as_os_errors(self._location):  # type: ignore[attr-defined]
            return int(obstore.head(self._store, self._key)["size"])

    def exists(self) -> bool:
        try:
            len(self)
        except FileNotFoundError:
            return False
        return True


class ObjectInput(_WholeObject, InputFile):
    """A small object read whole in one GET (no HEAD before it)."""

    def open(self, seekable: bool = True) -> InputStream:
        with _as_os_errors(self.location):
            data = obstore.get(self._store, self._key).bytes()
        return io.BytesIO(bytes(data))


class _UploadOnClose(io.BytesIO):
    """Collects what is written and PUTs it in one request when closed (an S3 object is
    written whole or not at all, as pyarrow's stream does it)."""

    def __init__(self, location: str, store: S3Store, key: str) -> None:
        super().__init__()
        self._location = location
        self._store = store
        self._key = key
        self._discard = False

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        # A stream left by an exception is not an object: nothing is written.
        self._discard = exc_type is not None
        self.close()

    def __del__(self) -> None:
        # Nor is one its writer dropped without closing it.
        self._discard = True
        super().__del__()

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._discard:
                with _as_os_errors(self._location):
                    obstore.put(self._store, self._key, self.getvalue(), use_multipart=False)
        finally:
            super().close()


class ObjectOutput(_WholeObject, OutputFile):
    """A small object written whole in one PUT when its stream is closed."""

    def to_input_file(self) -> InputFile:
        return ObjectInput(self.location, self._store, self._key)

    def create(self, overwrite: bool = False) -> OutputStream:
        if not overwrite and self.exists():
            raise FileExistsError(f"{self.location} already exists")
        return _UploadOnClose(self.location, self._store, self._key)


# Iceberg's metadata files, each written once and read whole: table metadata (``.metadata.json``,
# possibly compressed) and manifests and manifest lists (``.avro``).
METADATA_SUFFIXES = (".metadata.json", ".metadata.json.gz", ".gz.metadata.json", ".avro")

_stores: dict[tuple[Any, ...], S3Store] = {}
_stores_lock = threading.Lock()


class LakeFileIO(PyArrowFileIO):
    """pyiceberg's FileIO for the curated lake: metadata files through obstore, whole; data
    files and deletes through pyarrow's S3 filesystem, as ``PyArrowFileIO`` does them."""

    def new_input(self, location: str) -> InputFile:
        where = self._metadata_object(location)
        if where is None:
            return super().new_input(location)
        return ObjectInput(location, *where)

    def new_output(self, location: str) -> OutputFile:
        where = self._metadata_object(location)
        if where is None:
            return super().new_output(location)
        return ObjectOutput(location, *where)

    def _metadata_object(self, location: str) -> tuple[S3Store, str] | None:
        parsed = urlparse(location)
        if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
            return None
        if not parsed.path.endswith(METADATA_SUFFIXES):
            return None
        return self._store(parsed.netloc), parsed.path.lstrip("/")

    def _store(self, bucket: str) -> S3Store:
        # pyiceberg makes a FileIO per table load, several per fold: the clients are shared.
        endpoint = self.properties.get("s3.endpoint")
        region = self.properties.get("s3.region", "us-east-1")
        key_id = self.properties.get("s3.access-key-id") or self.properties.get(
            "client.access-key-id"
        )
        secret = self.properties.get("s3.secret-access-key") or self.properties.get(
            "client.secret-access-key"
        )
        token = self.properties.get("s3.session-token") or self.properties.get(
            "client.session-token"
        )
        keys = (key_id, secret) if key_id and secret else None
        cache_key = (bucket, endpoint, region, keys, token)
        with _stores_lock:
            if cache_key not in _stores:
                _stores[cache_key] = open_s3_store(
                    bucket, endpoint=endpoint, region=region, keys=keys, session_token=token
                )
            return _stores[cache_key]
