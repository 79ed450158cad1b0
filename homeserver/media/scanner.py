"""Virus scanning through clamd's INSTREAM command (unix socket or TCP).

The protocol: send ``zINSTREAM\\0``, then chunks each prefixed by their length as a 4-byte
big-endian integer, then a zero-length chunk; clamd answers one NUL-terminated line:
``stream: OK``, ``stream: <signature> FOUND`` or ``<message> ERROR`` (for example when the
stream passes clamd's StreamMaxLength).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# clamd's default StreamMaxLength is 25M; chunks must stay below its buffer size.
CHUNK_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class ScanVerdict:
    clean: bool
    signature: str | None = None


class ScannerUnavailable(Exception):
    """clamd could not be reached or could not give a verdict."""


class ClamdScanner:
    def __init__(
        self,
        *,
        socket_path: str | None = None,
        host: str | None = None,
        port: int = 3310,
        timeout: float = 60.0,
    ) -> None:
        if not socket_path and not host:
            raise ValueError("clamd needs a unix socket path or a host")
        self.socket_path = socket_path
        self.host = host
        self.port = port
        self.timeout = timeout

    @property
    def address(self) -> str:
        return self.socket_path or f"{self.host}:{self.port}"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self.socket_path:
                return await asyncio.open_unix_connection(self.socket_path)
            assert self.host is not None
            return await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise ScannerUnavailable(f"cannot connect to clamd at {self.address}: {exc}") from exc

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(5):
                reader, writer = await self._connect()
                try:
                    writer.write(b"zPING\0")
                    await writer.drain()
                    reply = await reader.readuntil(b"\0")
                finally:
                    writer.close()
            return reply.rstrip(b"\0") == b"PONG"
        except (ScannerUnavailable, OSError, TimeoutError, asyncio.IncompleteReadError):
            return False

    async def scan(self, chunks: AsyncIterable[bytes]) -> ScanVerdict:
        """Stream the content to clamd; raises ScannerUnavailable when there is no verdict."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._scan(chunks)
        except TimeoutError as exc:
            raise ScannerUnavailable(f"clamd at {self.address} timed out") from exc

    async def _scan(self, chunks: AsyncIterable[bytes]) -> ScanVerdict:
        reader, writer = await self._connect()
        try:
            try:
                writer.write(b"zINSTREAM\0")
                async for chunk in chunks:
                    for offset in range(0, len(chunk), CHUNK_LIMIT):
                        piece = chunk[offset : offset + CHUNK_LIMIT]
                        writer.write(struct.pack(">I", len(piece)))
                        writer.write(piece)
                        await writer.drain()
                writer.write(struct.pack(">I", 0))
                await writer.drain()
            except (ConnectionError, BrokenPipeError) as exc:
                # clamd hangs up early when the stream passes StreamMaxLength: read why.
                logger.debug("clamd closed the stream early: %s", exc)
            try:
                reply = await reader.readuntil(b"\0")
            except asyncio.IncompleteReadError as exc:
                reply = exc.partial
            except (ConnectionError, asyncio.LimitOverrunError) as exc:
                raise ScannerUnavailable(f"clamd at {self.address} gave no answer: {exc}") from exc
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, BrokenPipeError):
                pass
        return parse_reply(reply, self.address)


def parse_reply(reply: bytes, address: str = "clamd") -> ScanVerdict:
    text = reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    # "stream: OK" / "stream: Eicar-Signature FOUND"; with an id prefix ("1: stream: ...") too.
    _, _, result = text.rpartition("stream: ")
    if text.endswith("ERROR") or not result:
        raise ScannerUnavailable(f"clamd at {address} failed: {text or 'no answer'}")
    if result == "OK":
        return ScanVerdict(True)
    if result.endswith(" FOUND"):
        return ScanVerdict(False, result[: -len(" FOUND")].strip() or "unknown")
    raise ScannerUnavailable(f"clamd at {address} answered {text!r}")
