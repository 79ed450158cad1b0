"""Streaming reader for the federation media answer: `multipart/mixed` (RFC 2046) with exactly two
parts, a JSON metadata object then the media (or a `Location` header pointing at it).

Written for this one shape rather than as a general parser so that every piece has a bound: the
preamble, each header block and the JSON part are read into memory only up to small limits, and
the media part is handed on in chunks as it arrives (its size is capped by whoever stores it).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

PREAMBLE_LIMIT = 16 * 1024
HEADERS_LIMIT = 16 * 1024
JSON_LIMIT = 64 * 1024
_BOUNDARY = re.compile(r"""boundary\s*=\s*(?:"([^"]{1,70})"|([^\s;"]{1,70}))""", re.IGNORECASE)


class MultipartError(Exception):
    """The answer is not the two-part `multipart/mixed` body the spec describes."""


def boundary_of(content_type: str | None) -> str | None:
    """The boundary of a `multipart/mixed` Content-Type, or None for anything else."""
    if not content_type:
        return None
    if content_type.split(";", 1)[0].strip().lower() != "multipart/mixed":
        return None
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    return match.group(1) or match.group(2)


class _Buffer:
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        # The first delimiter may open the body without the CRLF that precedes later ones.
        self.data = bytearray(b"\r\n")

    async def fill(self) -> bool:
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            return False
        self.data += chunk
        return True

    async def read_until(self, marker: bytes, limit: int, what: str) -> bytes:
        start = 0
        while True:
            index = self.data.find(marker, start)
            if index >= 0:
                out = bytes(self.data[:index])
                del self.data[: index + len(marker)]
                return out
            if len(self.data) > limit + len(marker):
                raise MultipartError(f"{what} is too long")
            start = max(0, len(self.data) - len(marker) + 1)
            if not await self.fill():
                raise MultipartError(f"the body ends inside {what}")

    async def startswith(self, prefix: bytes) -> bool:
        while len(self.data) < len(prefix):
            if not await self.fill():
                return False
        return bytes(self.data[: len(prefix)]) == prefix


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise MultipartError("malformed part header")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


class MediaMultipart:
    """Read in order: `await metadata()`, `await media_headers()`, then `media_chunks()`."""

    def __init__(self, chunks: AsyncIterator[bytes], boundary: str) -> None:
        self._buf = _Buffer(chunks)
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")

    async def _open_part(self) -> dict[str, str]:
        """After a delimiter: transport padding, CRLF, the part's headers."""
        if await self._buf.startswith(b"--"):
            raise MultipartError("the body has fewer than two parts")
        await self._buf.read_until(b"\r\n", 256, "the boundary line")
        if await self._buf.startswith(b"\r\n"):
            del self._buf.data[:2]
            return {}
        return _parse_headers(await self._buf.read_until(b"\r\n\r\n", HEADERS_LIMIT, "part headers"))

    async def metadata(self) -> dict[str, Any]:
        await self._buf.read_until(self._delimiter, PREAMBLE_LIMIT, "the preamble")
        headers = await self._open_part()
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise MultipartError("the first part is not application/json")
        raw = await self._buf.read_until(self._delimiter, JSON_LIMIT, "the JSON part")
        try:
            value = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise MultipartError("the first part is not valid JSON") from exc
        if not isinstance(value, dict):
            raise MultipartError("the first part is not a JSON object")
        return value

    async def media_headers(self) -> dict[str, str]:
        """The second part's headers (lower-case names): Content-Type etc., or Location."""
        return await self._open_part()

    async def media_chunks(self) -> AsyncIterator[bytes]:
        """The second part's bytes, as they arrive, up to the closing delimiter."""
        keep = len(self._delimiter) - 1  # a delimiter may straddle two chunks
        buf = self._buf
        while True:
            index = buf.data.find(self._delimiter)
            if index >= 0:
                if index:
                    yield bytes(buf.data[:index])
                del buf.data[:]
                return
            if len(buf.data) > keep:
                out = bytes(buf.data[: len(buf.data) - keep])
                del buf.data[: len(buf.data) - keep]
                yield out
            if not await buf.fill():
                raise MultipartError("the body ends inside the media part")
