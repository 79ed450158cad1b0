"""Caching remote media: fetch once (`remote.py`), scan, store, record; concurrent asks share it.

A fetched item goes through the same steps as an upload: clamd (when configured), the file moved
into `remote_content/<origin>/` under a random file id, a row in `media` with the remote origin
(no user), and the quarantine-by-hash check. Several requests for an item not cached yet wait on
one download in this process; the download is shielded, so a client hanging up does not abort it
for the others. Another worker racing us loses on the row's primary key and its copy is deleted.
Items the scanner refused are remembered (bounded, in memory), so asking again is refused without
downloading again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from homeserver.core.errors import MatrixError, not_found
from homeserver.media.ids import generate_media_id, mxc_uri
from homeserver.media.remote import RemoteMediaFetcher
from homeserver.media.repository import DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, MalwareFound, MediaRepository
from homeserver.storage.stores.media import MediaInfo

logger = logging.getLogger(__name__)

INFECTED_CACHE_SIZE = 10_000


class RemoteMediaCache:
    def __init__(self, repository: MediaRepository, fetcher: RemoteMediaFetcher) -> None:
        self.repository = repository
        self.fetcher = fetcher
        self._fetches: dict[tuple[str, str], asyncio.Task[MediaInfo]] = {}
        self._infected: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def get(self, origin: str, media_id: str, timeout_ms: int | None) -> MediaInfo:
        """Fetch and cache `mxc://origin/media_id` (known not to be cached); its row."""
        if origin.startswith("."):
            raise not_found("Unknown media")  # not a usable host, nor a safe directory name
        key = (origin, media_id)
        refused = self._infected.get(key)
        if refused is not None:
            raise MatrixError(403, "M_FORBIDDEN", f"The remote media contains malware ({refused})")
        task = self._fetches.get(key)
        if task is None:
            task = asyncio.ensure_future(self._download(origin, media_id, timeout_ms))
            self._fetches[key] = task

            def done(finished: asyncio.Task[MediaInfo]) -> None:
                if self._fetches.get(key) is finished:
                    del self._fetches[key]
                if not finished.cancelled():
                    finished.exception()  # retrieved: every waiter may have gone away

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _download(self, origin: str, media_id: str, timeout_ms: int | None) -> MediaInfo:
        repo = self.repository
        timeout = DEFAULT_TIMEOUT_MS if timeout_ms is None else max(0, min(timeout_ms, MAX_TIMEOUT_MS))
        mxc = mxc_uri(origin, media_id)
        fetched = await self.fetcher.fetch(origin, media_id, timeout_ms=timeout)
        temp = fetched.temp
        file_id = generate_media_id()
        path = repo.storage.content_path(origin, file_id)
        try:
            try:
                await repo.scan(temp, None, fetched.media_type, fetched.upload_name, None, remote=mxc)
            except MalwareFound as exc:
                self._infected[(origin, media_id)] = exc.signature
                if len(self._infected) > INFECTED_CACHE_SIZE:
                    self._infected.popitem(last=False)
                raise
            await repo.storage.commit_temp(temp, path)
        except BaseException:
            await repo.storage.discard_temp(temp)
            raise
        try:
            inserted = await repo.store.insert_remote_media(
                origin=origin,
                media_id=media_id,
                media_type=fetched.media_type,
                upload_name=fetched.upload_name,
                media_length=temp.length,
                now_ts=repo.clock.time_ms(),
                sha256=temp.sha256,
                filesystem_id=file_id,
                # Cached while authenticated media is on: frozen on the legacy endpoints.
                authenticated=bool(repo.config.enable_authenticated_media),
            )
        except BaseException:
            await repo.storage.delete(path)
            raise
        if not inserted:
            await repo.storage.delete(path)  # another worker cached it meanwhile: theirs stays
        else:
            await repo.quarantine_if_known_bad(origin, media_id, temp.sha256)
            logger.info("cached remote media %s (%d bytes, %s)", mxc, temp.length, fetched.media_type)
        info = await repo.store.get_media(origin, media_id)
        if info is None:
            raise not_found("Unknown media")
        return info
