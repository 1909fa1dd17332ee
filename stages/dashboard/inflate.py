"""Gzip decompression with a ceiling on what it produces.

Anyone who can write to a lake bucket can plant a gzip bomb (a gigabyte of zeros is about a
megabyte compressed), so the dashboard never inflates a stream without a limit: output comes in
pieces of at most ``PIECE_BYTES``, and once ``limit`` bytes have come out the inflater stops and
says so (``capped``). Concatenated gzip members (RFC 1952 allows them) are followed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from stages.common.errors import Unprocessable

PIECE_BYTES = 1024 * 1024
_GZIP = 31  # zlib's wbits for a gzip header and trailer


class Inflater:
    """One gzip stream, fed compressed chunks in order; at most ``limit`` bytes come out."""

    def __init__(self, key: str, limit: int) -> None:
        self.key = key
        self.limit = limit
        self.inflated = 0
        self.capped = False  # stopped at the limit before the stream ended
        self._member = zlib.decompressobj(wbits=_GZIP)
        self._in_member = False  # bytes of the current member were fed and it has not ended

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decompressed pieces of ``data``; stops (``capped``) at the limit."""
        while data and not self.capped:
            room = self.limit - self.inflated
            if room <= 0:
                self.capped = True
                return
            try:
                piece = self._member.decompress(data, min(room, PIECE_BYTES))
            except zlib.error as exc:
                raise Unprocessable(f"object {self.key!r} is not valid gzip: {exc}") from exc
            self._in_member = True
            self.inflated += len(piece)
            data = self._member.unconsumed_tail
            if self._member.eof:
                data = self._member.unused_data + data
                self._member = zlib.decompressobj(wbits=_GZIP)
                self._in_member = False
            if piece:
                yield piece

    def finish(self) -> None:
        """At the end of the compressed input: the last member must be complete."""
        if self._in_member and not self.capped:
            raise Unprocessable(f"object {self.key!r} is a truncated gzip stream")
