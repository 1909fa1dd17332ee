"""PutObject checks the body against the digest its client sent, as S3 does.

moto stored whatever body arrived under whatever ``x-amz-checksum-*`` value the client claimed
(its source says "TODO: AWS computes the provided value and verifies it's the same") and
ignored ``Content-MD5``. A body cut short on its way (a client killed mid-upload behind a proxy
that forwarded what it had) was then stored, empty or partial, under the whole body's checksum:
every later GET failed the SDK's checksum validation, and the object looked written. S3 answers
such a PUT ``400 BadDigest`` and stores nothing; so does the emulator now, for the digests it can
compute exactly. CRC32C and CRC64NVME need optional libraries that moto replaces by CRC32 when
they are missing, so those are checked only where the library is installed; a value for a
checksum not checked is stored as sent, as before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.util
from typing import Any

from moto.s3 import responses as s3_responses
from moto.s3.exceptions import S3ClientError
from moto.s3.utils import compute_checksum

_OPTIONAL_LIBRARY = {"CRC32C": "crc32c", "CRC64NVME": "awscrt"}


def _checked_algorithms() -> tuple[str, ...]:
    available = [
        algorithm
        for algorithm, module in _OPTIONAL_LIBRARY.items()
        if importlib.util.find_spec(module) is not None
    ]
    return ("CRC32", "SHA1", "SHA256", *available)


class BadDigest(S3ClientError):
    def __init__(self, message: str) -> None:
        super().__init__("BadDigest", message)


class InvalidDigest(S3ClientError):
    def __init__(self) -> None:
        super().__init__("InvalidDigest", "The Content-MD5 you specified was invalid.")


def verify_body(headers: Any, body: bytes, algorithms: tuple[str, ...]) -> None:
    """Raise ``BadDigest`` if ``body`` does not match a digest header sent with it."""
    for algorithm in algorithms:
        claimed = headers.get(f"x-amz-checksum-{algorithm.lower()}")
        if claimed and claimed != compute_checksum(body, algorithm).decode():
            raise BadDigest(f"The {algorithm} you specified did not match the calculated checksum.")
    content_md5 = headers.get("Content-MD5")
    if content_md5:
        try:
            claimed_md5 = base64.b64decode(content_md5, validate=True)
        except binascii.Error:
            raise InvalidDigest() from None
        if len(claimed_md5) != 16:
            raise InvalidDigest()
        if claimed_md5 != hashlib.md5(body, usedforsecurity=False).digest():
            raise BadDigest("The Content-MD5 you specified did not match what we received.")


def install() -> None:
    algorithms = _checked_algorithms()
    original_put_object = s3_responses.S3Response.put_object

    def put_object(self: s3_responses.S3Response) -> Any:
        # ``self.body`` is the decoded payload (aws-chunked framing removed); a checksum sent
        # in a trailer rather than a header is not checked.
        verify_body(self.headers, self.body or b"", algorithms)
        return original_put_object(self)

    s3_responses.S3Response.put_object = put_object  # type: ignore[method-assign]
