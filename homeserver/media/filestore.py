"""Where media bytes live: the local filesystem (aiofiles), laid out as Synapse does.

    <root>/local_content/ab/cd/efgh...           uploads (file id = media id)
    <root>/remote_content/<origin>/ab/cd/ef...   remote media cached through federation
    <root>/local_thumbnails/ab/cd/efgh.../<w>-<h>-<type>-<method>[-animated]
    <root>/remote_thumbnail/<origin>/ab/cd/ef.../...
    <root>/tmp/                                   uploads in progress

Files are written under tmp/ and moved into place once complete (and scanned), so a reader
never sees half a file. Nothing here holds a whole file in memory: reads and writes go in
chunks. Another backend (S3) would implement the same methods.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiofiles
import aiofiles.os

CHUNK_SIZE = 256 * 1024


class UploadTooLarge(Exception):
    pass


def _split(file_id: str) -> str:
    return os.path.join(file_id[0:2], file_id[2:4], file_id[4:])


@dataclass
class TempFile:
    """A file being written under tmp/; `sha256`, `length` are filled in as it is written."""

    path: str
    length: int = 0
    _hash: Any = field(default_factory=hashlib.sha256)

    @property
    def sha256(self) -> str:
        return str(self._hash.hexdigest())


class LocalMediaStorage:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.tmp_dir = os.path.join(self.root, "tmp")

    # -- paths (relative to root) ---------------------------------------------------------

    @staticmethod
    def content_path(origin: str | None, file_id: str) -> str:
        """origin None means local media."""
        if origin is None:
            return os.path.join("local_content", _split(file_id))
        return os.path.join("remote_content", origin, _split(file_id))

    @staticmethod
    def thumbnail_path(
        origin: str | None,
        file_id: str,
        width: int,
        height: int,
        media_type: str,
        method: str,
        animated: bool,
    ) -> str:
        top, _, sub = media_type.partition("/")
        name = f"{width}-{height}-{top}-{sub}-{method}" + ("-animated" if animated else "")
        if origin is None:
            return os.path.join("local_thumbnails", _split(file_id), name)
        return os.path.join("remote_thumbnail", origin, _split(file_id), name)

    @staticmethod
    def thumbnail_dir(origin: str | None, file_id: str) -> str:
        if origin is None:
            return os.path.join("local_thumbnails", _split(file_id))
        return os.path.join("remote_thumbnail", origin, _split(file_id))

    def abspath(self, rel: str) -> str:
        path = os.path.normpath(os.path.join(self.root, rel))
        if not path.startswith(self.root + os.sep):
            raise ValueError(f"path escapes the media store: {rel!r}")
        return path

    # -- writing --------------------------------------------------------------------------

    async def write_temp(self, chunks: AsyncIterable[bytes], max_size: int) -> TempFile:
        """Stream `chunks` into a new temp file, hashing as it goes; UploadTooLarge past max_size."""
        await aiofiles.os.makedirs(self.tmp_dir, exist_ok=True)
        temp = TempFile(os.path.join(self.tmp_dir, f"upload-{secrets.token_hex(12)}"))
        try:
            async with aiofiles.open(temp.path, "wb") as f:
                async for chunk in chunks:
                    if not chunk:
                        continue
                    temp.length += len(chunk)
                    if temp.length > max_size:
                        raise UploadTooLarge()
                    temp._hash.update(chunk)
                    await f.write(chunk)
        except BaseException:
            await self.discard_temp(temp)
            raise
        return temp

    async def discard_temp(self, temp: TempFile) -> None:
        try:
            await aiofiles.os.remove(temp.path)
        except FileNotFoundError:
            pass

    async def commit_temp(self, temp: TempFile, rel: str, *, exclusive: bool = False) -> bool:
        """Move a finished temp file into place. With `exclusive`, False (and the temp file
        discarded) when something is already there: a hard link creates the name atomically."""
        dest = self.abspath(rel)
        await aiofiles.os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not exclusive:
            await aiofiles.os.replace(temp.path, dest)
            return True
        try:
            await aiofiles.os.link(temp.path, dest)
        except FileExistsError:
            return False
        finally:
            await self.discard_temp(temp)
        return True

    async def write_bytes(self, rel: str, data: bytes) -> None:
        """Small files (thumbnails): written to tmp/ then renamed into place."""
        await aiofiles.os.makedirs(self.tmp_dir, exist_ok=True)
        temp = TempFile(os.path.join(self.tmp_dir, f"small-{secrets.token_hex(12)}"))
        async with aiofiles.open(temp.path, "wb") as f:
            await f.write(data)
        await self.commit_temp(temp, rel)

    # -- reading --------------------------------------------------------------------------

    async def exists(self, rel: str) -> bool:
        return bool(await aiofiles.os.path.isfile(self.abspath(rel)))

    async def size(self, rel: str) -> int:
        return int((await aiofiles.os.stat(self.abspath(rel))).st_size)

    def read_chunks(
        self, rel: str, start: int = 0, length: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        return _read_file(self.abspath(rel), start, length, chunk_size)

    def read_temp(self, temp: TempFile) -> AsyncIterator[bytes]:
        return _read_file(temp.path, 0, None, CHUNK_SIZE)

    # -- deleting -------------------------------------------------------------------------

    async def delete(self, rel: str) -> None:
        try:
            await aiofiles.os.remove(self.abspath(rel))
        except FileNotFoundError:
            pass

    async def delete_tree(self, rel: str) -> None:
        path = self.abspath(rel)
        if not await aiofiles.os.path.isdir(path):
            return
        for name in await aiofiles.os.listdir(path):
            try:
                await aiofiles.os.remove(os.path.join(path, name))
            except (FileNotFoundError, IsADirectoryError):
                pass
        try:
            await aiofiles.os.rmdir(path)
        except OSError:
            pass


async def _read_file(path: str, start: int, length: int | None, chunk_size: int) -> AsyncIterator[bytes]:
    async with aiofiles.open(path, "rb") as f:
        if start:
            await f.seek(start)
        remaining = length
        while remaining is None or remaining > 0:
            want = chunk_size if remaining is None else min(chunk_size, remaining)
            chunk = await f.read(want)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
