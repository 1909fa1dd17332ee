"""boto3 client factories that honour AWS_ENDPOINT_URL, the region and the credential chain."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config

from stages.common import base64_codec
from stages.common.config import Settings

# botocore retries a little for the control plane; the data path (producer, consumer) passes
# retries=False and makes every retry itself, so each one is counted by cause.
_CLIENT_CONFIG = Config(
    retries={"max_attempts": 2, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=64,
)
# Emulators (moto, LocalStack, MinIO) serve every bucket under one host name; AWS itself
# wants virtual-hosted addressing (bucket.s3.<region>.amazonaws.com), boto3's own default.
_PATH_STYLE = Config(s3={"addressing_style": "path"})
DEFAULT_REGION = "us-east-1"


# total_max_attempts counts the first call too; max_attempts=1 would still allow one retry.
_NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def client(
    service: str,
    settings: Settings,
    *,
    retries: bool = True,
    config: Config | None = None,
    **overrides: Any,
) -> Any:
    """A boto3 client for ``service``; ``endpoint_url`` None means real AWS.

    ``retries=False`` turns botocore's retries off for callers that retry (and count) themselves;
    ``config`` is merged over the defaults.
    """
    session = _shared_session()
    merged = _CLIENT_CONFIG if retries else _CLIENT_CONFIG.merge(_NO_RETRIES)
    if needs_path_style(settings.aws_endpoint_url):
        merged = merged.merge(_PATH_STYLE)
    if config is not None:
        merged = merged.merge(config)
    kwargs: dict[str, Any] = {"region_name": region(settings), "config": merged}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
        if emulator_keys_needed(settings.aws_endpoint_url):
            kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = EMULATOR_KEYS
    kwargs.update(overrides)
    with _session_lock:
        return session.client(service, **kwargs)


_session_lock = threading.Lock()


@lru_cache(maxsize=1)
def _shared_session() -> boto3.session.Session:
    """One session per process: its clients share loaded service models, which a session per
    client would each load again. Sessions are not thread-safe, so clients are created under a
    lock. Blob fields (Kinesis record data) are decoded with pybase64 (base64_codec)."""
    session = boto3.session.Session()
    base64_codec.decode_response_blobs(session._session)
    return session


def region(settings: Settings) -> str:
    """The region as the AWS tools resolve it: AWS_REGION, then AWS_DEFAULT_REGION, then the
    profile's ``region`` (AWS_PROFILE, AWS_CONFIG_FILE), then us-east-1."""
    return (
        settings.aws_region
        or settings.aws_default_region
        or _shared_session().region_name
        or DEFAULT_REGION
    )


def needs_path_style(endpoint_url: str | None) -> bool:
    """Path-style S3 addressing for any endpoint but AWS's own (an emulator or S3-compatible
    store answers on one host name); unset means AWS, and boto3's virtual-hosted default."""
    if not endpoint_url:
        return False
    host = urlparse(endpoint_url).hostname or ""
    return not (host == "amazonaws.com" or host.endswith((".amazonaws.com", ".amazonaws.com.cn")))


# The emulator accepts any key; these are LocalStack's documented defaults.
EMULATOR_KEYS = ("test", "test")


def emulator_keys_needed(endpoint: str | None) -> bool:
    """Whether ``endpoint`` is a local emulator and the AWS chain finds no credentials: then
    every client (boto3, obstore, the Iceberg catalog) uses ``EMULATOR_KEYS``."""
    if not endpoint or not is_local_endpoint(endpoint):
        return False
    return _shared_session().get_credentials() is None


def is_local_endpoint(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in {"localhost", "127.0.0.1", "::1", "localstack"} or host.startswith("127.")
