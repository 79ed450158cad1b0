"""The media repository service: uploads, downloads, thumbnails, scanning, admin operations.

Handlers in `api/media` call one method each. Bytes never sit whole in memory: uploads stream
from the request into a temp file (hashed and size-capped as they arrive), are scanned by
clamd from that file when it is configured, and only then move into place and get their row;
downloads stream from the file in chunks.

Access rule (as Synapse): any authenticated local user may download any local media; media
ids are 143-bit random strings, so knowing one is the capability. Quarantined media is 404.
Media uploaded while `enable_authenticated_media` is on is marked `authenticated` and is
not served by the legacy unauthenticated endpoints (the spec's "freeze"); with
`allow_legacy_unauthenticated_media: false` those endpoints demand a token outright.

Remote media (`mxc://` of another server) not cached yet is fetched by `remote_cache.py`, then
served like local media; its thumbnails are generated here, from the cached original. The legacy
unauthenticated endpoints do not fetch new remote media once `enable_authenticated_media` is on
(the freeze, as Synapse), and `allow_remote=false` never does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.config.sections import HomeserverConfig
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, forbidden, missing_token, not_found, too_large
from homeserver.core.ids import is_valid_server_name
from homeserver.http.requester import Requester
from homeserver.media import thumbnails
from homeserver.media.filestore import LocalMediaStorage, TempFile, UploadTooLarge
from homeserver.media.headers import (
    SECURITY_HEADERS,
    base_type,
    clean_filename,
    content_disposition,
    normalise_content_type,
    served_content_type,
)
from homeserver.media.ids import generate_media_id, is_valid_media_id, mxc_uri
from homeserver.media.scanner import ClamdScanner, ScannerUnavailable
from homeserver.storage.stores.media import MediaInfo, MediaStore, ThumbnailInfo

if TYPE_CHECKING:
    from homeserver.media.remote_cache import RemoteMediaCache

logger = logging.getLogger(__name__)
# The audit trail for refused uploads: a dedicated logger operators can route to their SIEM.
audit_logger = logging.getLogger("homeserver.media.audit")

DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 60_000
ACCESS_TOUCH_INTERVAL_MS = 3600 * 1000
THUMBNAIL_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}
# Concurrent Pillow jobs (each may decode up to max_image_pixels).
THUMBNAIL_CONCURRENCY = max(2, min(4, (os.cpu_count() or 2) // 2))
PROBE_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Download:
    """What the HTTP layer needs to stream one piece of media (or a thumbnail)."""

    storage: LocalMediaStorage
    path: str  # relative to the media store
    media_type: str
    length: int
    disposition: str
    etag: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        headers = dict(SECURITY_HEADERS)
        headers["Content-Disposition"] = self.disposition
        return headers

    def chunks(self, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.storage.read_chunks(self.path, start, length)


class MalwareFound(MatrixError):
    def __init__(self, message: str, signature: str) -> None:
        super().__init__(403, "M_FORBIDDEN", message)
        self.signature = signature


def _upload_too_large(max_size: int) -> MatrixError:
    return too_large(f"Upload is larger than the {max_size}-byte limit")


class MediaRepository:
    def __init__(
        self,
        config: HomeserverConfig,
        store: MediaStore,
        storage: LocalMediaStorage,
        clock: Clock,
        *,
        scanner: ClamdScanner | None = None,
    ) -> None:
        self.config = config
        self.options = config.media
        self.server_name: str = config.server_name
        self.store = store
        self.storage = storage
        self.clock = clock
        self.scanner = scanner
        self.max_upload_size: int = config.max_upload_size
        self.max_image_pixels: int = config.max_image_pixels
        self.sizes = [(s.width, s.height, s.method) for s in config.thumbnail_sizes]
        self.previews: Any = None  # the UrlPreviewService, set by build_media_repository
        self._upload_events: weakref.WeakValueDictionary[tuple[str, str], asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        self._thumb_locks: weakref.WeakValueDictionary[tuple[Any, ...], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._thumb_slots = asyncio.Semaphore(THUMBNAIL_CONCURRENCY)
        self._probes: OrderedDict[tuple[str, str], thumbnails.ImageProbe] = OrderedDict()
        self.remote: RemoteMediaCache | None = None  # set when federation is available

    async def close(self) -> None:
        if self.previews is not None:
            await self.previews.close()

    # -- config ---------------------------------------------------------------------------

    def media_config(self) -> dict[str, Any]:
        return {"m.upload.size": self.max_upload_size}

    # -- uploads --------------------------------------------------------------------------

    async def upload(
        self,
        requester: Requester,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str | None,
        filename: str | None,
        content_length: int | None,
        client_ip: str | None = None,
    ) -> str:
        """Store an upload (POST /upload); returns its mxc:// URI."""
        self._check_may_upload(requester)
        if content_length is not None and content_length > self.max_upload_size:
            raise _upload_too_large(self.max_upload_size)
        await self._check_quota(requester.user_id, content_length or 0)
        media_type = normalise_content_type(content_type)
        upload_name = clean_filename(filename)
        temp = await self._receive(chunks)
        try:
            await self._check_quota(requester.user_id, temp.length)
            await self.scan(temp, requester.user_id, media_type, upload_name, client_ip)
            media_id = generate_media_id()
            await self.storage.commit_temp(temp, self.storage.content_path(None, media_id))
        except BaseException:
            await self.storage.discard_temp(temp)
            raise
        now = self.clock.time_ms()
        try:
            await self.store.insert_media(
                origin=self.server_name,
                media_id=media_id,
                user_id=requester.user_id,
                media_type=media_type,
                upload_name=upload_name,
                media_length=temp.length,
                created_ts=now,
                uploaded_ts=now,
                unused_expires_ts=None,
                sha256=temp.sha256,
                filesystem_id=media_id,
                authenticated=bool(self.config.enable_authenticated_media),
            )
        except BaseException:
            await self.storage.delete(self.storage.content_path(None, media_id))
            raise
        await self.quarantine_if_known_bad(self.server_name, media_id, temp.sha256)
        logger.info("%s uploaded %s (%d bytes, %s)", requester.user_id, media_id, temp.length, media_type)
        return mxc_uri(self.server_name, media_id)

    async def create(self, requester: Requester) -> dict[str, Any]:
        """POST /media/v1/create: reserve an mxc:// URI for a later PUT."""
        self._check_may_upload(requester)
        now = self.clock.time_ms()
        pending = await self.store.count_pending_uploads(requester.user_id, now)
        if pending >= self.options.max_pending_media_uploads:
            raise MatrixError(
                429, "M_LIMIT_EXCEEDED", "You have too many uploads pending", retry_after_ms=60_000
            )
        media_id = generate_media_id()
        expires = now + self.options.unused_expiration_time
        await self.store.insert_media(
            origin=self.server_name,
            media_id=media_id,
            user_id=requester.user_id,
            media_type=None,
            upload_name=None,
            media_length=None,
            created_ts=now,
            uploaded_ts=None,
            unused_expires_ts=expires,
            sha256=None,
            filesystem_id=media_id,
            authenticated=bool(self.config.enable_authenticated_media),
        )
        await self._delete_expired_pending(now)
        return {"content_uri": mxc_uri(self.server_name, media_id), "unused_expires_at": expires}

    async def upload_to_pending(
        self,
        requester: Requester,
        server_name: str,
        media_id: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str | None,
        filename: str | None,
        content_length: int | None,
        client_ip: str | None = None,
    ) -> None:
        """PUT /media/v3/upload/{serverName}/{mediaId}: fill a URI reserved with /create."""
        self._check_may_upload(requester)
        if server_name != self.server_name or not is_valid_media_id(media_id):
            raise not_found("Unknown media ID")
        info = await self.store.get_media(server_name, media_id)
        now = self.clock.time_ms()
        if info is None or (
            not info.uploaded and info.unused_expires_ts is not None and info.unused_expires_ts <= now
        ):
            raise not_found("Unknown media ID")
        if info.user_id != requester.user_id:
            raise forbidden("You may only upload to media IDs you created")
        if info.uploaded:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        if content_length is not None and content_length > self.max_upload_size:
            raise _upload_too_large(self.max_upload_size)
        await self._check_quota(requester.user_id, content_length or 0)
        media_type = normalise_content_type(content_type)
        upload_name = clean_filename(filename)
        temp = await self._receive(chunks)
        try:
            await self._check_quota(requester.user_id, temp.length)
            await self.scan(temp, requester.user_id, media_type, upload_name, client_ip)
        except BaseException:
            await self.storage.discard_temp(temp)
            raise
        length, sha256 = temp.length, temp.sha256
        path = self.storage.content_path(None, info.filesystem_id)
        # The link is atomic: of two racing uploads exactly one gets the file in place.
        if not await self.storage.commit_temp(temp, path, exclusive=True):
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        done = await self.store.complete_pending_upload(
            server_name,
            media_id,
            media_type=media_type,
            upload_name=upload_name,
            media_length=length,
            uploaded_ts=self.clock.time_ms(),
            sha256=sha256,
        )
        if not done:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        await self.quarantine_if_known_bad(self.server_name, media_id, sha256)
        event = self._upload_events.get((server_name, media_id))
        if event is not None:
            event.set()
        logger.info("%s uploaded %s (%d bytes, %s)", requester.user_id, media_id, length, media_type)

    async def store_local_bytes(
        self,
        user_id: str | None,
        data: bytes,
        media_type: str,
        *,
        upload_name: str | None = None,
        url_cache: str | None = None,
    ) -> tuple[str, int]:
        """Store content we fetched ourselves (URL preview images); returns (media_id, length)."""

        async def one() -> AsyncIterator[bytes]:
            yield data

        temp = await self._receive(one())
        try:
            await self.scan(temp, user_id, media_type, upload_name, None)
            media_id = generate_media_id()
            await self.storage.commit_temp(temp, self.storage.content_path(None, media_id))
        except BaseException:
            await self.storage.discard_temp(temp)
            raise
        now = self.clock.time_ms()
        await self.store.insert_media(
            origin=self.server_name,
            media_id=media_id,
            user_id=user_id,
            media_type=media_type,
            upload_name=upload_name,
            media_length=temp.length,
            created_ts=now,
            uploaded_ts=now,
            unused_expires_ts=None,
            sha256=temp.sha256,
            filesystem_id=media_id,
            authenticated=bool(self.config.enable_authenticated_media),
            url_cache=url_cache,
        )
        return media_id, temp.length

    def _check_may_upload(self, requester: Requester) -> None:
        if requester.is_guest:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not upload media")

    async def _receive(self, chunks: AsyncIterable[bytes]) -> TempFile:
        try:
            return await self.storage.write_temp(chunks, self.max_upload_size)
        except UploadTooLarge as exc:
            raise _upload_too_large(self.max_upload_size) from exc

    async def _check_quota(self, user_id: str, incoming: int) -> None:
        limits = self.options.media_upload_limits
        if not limits:
            return
        now = self.clock.time_ms()
        for limit in limits:
            used = await self.store.uploaded_bytes_since(user_id, now - limit.time_period)
            if used + incoming > limit.max_size:
                raise forbidden(
                    f"Media upload limit exceeded: at most {limit.max_size} bytes per "
                    f"{limit.time_period // 1000} seconds"
                )

    async def scan(
        self,
        temp: TempFile,
        user_id: str | None,
        media_type: str,
        upload_name: str | None,
        client_ip: str | None,
        *,
        remote: str | None = None,
    ) -> None:
        """Raise unless clamd finds the file clean; `remote` is the mxc URI of fetched remote media."""
        if self.scanner is None:
            return
        what = f"remote media {remote}" if remote else f"upload by {user_id}"
        try:
            verdict = await self.scanner.scan(self.storage.read_temp(temp))
        except ScannerUnavailable as exc:
            if self.options.clamd.fail_closed:
                logger.error("virus scanner unavailable, %s refused: %s", what, exc)
                raise MatrixError(
                    503,
                    "M_UNKNOWN",
                    f"The virus scanner is unavailable; try the {'download' if remote else 'upload'}"
                    " again later",
                ) from exc
            logger.warning("virus scanner unavailable, %s accepted unscanned: %s", what, exc)
            return
        if verdict.clean:
            return
        signature = verdict.signature or "unknown"
        if remote:
            audit_logger.warning(
                "infected remote media refused: mxc=%s sha256=%s size=%d type=%s name=%r signature=%s",
                remote,
                temp.sha256,
                temp.length,
                media_type,
                upload_name,
                signature,
            )
        else:
            audit_logger.warning(
                "infected upload rejected: user=%s ip=%s sha256=%s size=%d type=%s name=%r signature=%s",
                user_id,
                client_ip,
                temp.sha256,
                temp.length,
                media_type,
                upload_name,
                signature,
            )
        await self.store.insert_scan_rejection(
            rejection_id=secrets.token_hex(12),
            user_id=user_id,
            ts=self.clock.time_ms(),
            client_ip=client_ip,
            sha256=temp.sha256,
            media_length=temp.length,
            media_type=media_type,
            upload_name=upload_name if not remote else f"{remote} {upload_name or ''}".strip(),
            signature=signature,
        )
        if remote:
            raise MalwareFound(f"The remote media contains malware ({signature})", signature)
        raise MalwareFound(f"Upload rejected: the file contains malware ({signature})", signature)

    async def _delete_expired_pending(self, now: int) -> None:
        for info in await self.store.list_expired_pending(now, limit=100):
            await self.store.delete_media(info.origin, info.media_id)

    # -- downloads ------------------------------------------------------------------------

    def check_legacy_access(self, requester: Requester | None) -> None:
        """The legacy /_matrix/media endpoints: a token is needed once they are switched off."""
        if requester is None and not self.options.allow_legacy_unauthenticated_media:
            raise missing_token()

    async def _readable(
        self,
        requester: Requester | None,
        server_name: str,
        media_id: str,
        *,
        legacy: bool,
        timeout_ms: int | None,
        bypass_quarantine: bool = False,
        allow_remote: bool = True,
    ) -> MediaInfo:
        if legacy:
            self.check_legacy_access(requester)
        if not is_valid_server_name(server_name) or not is_valid_media_id(media_id):
            raise not_found("Unknown media")
        info = await self.store.get_media(server_name, media_id)
        if info is None and server_name != self.server_name:
            # Not cached yet. The legacy endpoints without a token are frozen once authenticated
            # media is on: what they could not serve anyway is not fetched for them.
            frozen = legacy and requester is None and bool(self.config.enable_authenticated_media)
            if not allow_remote or frozen:
                raise not_found("Unknown media")
            if self.remote is None:
                raise not_found("Unknown media")
            info = await self.remote.get(server_name, media_id, timeout_ms)
        if info is None:
            raise not_found("Unknown media")
        if not info.uploaded:
            info = await self._wait_uploaded(info, timeout_ms)
        if info.quarantined_by is not None and not (
            bypass_quarantine and requester is not None and requester.is_admin
        ):
            # 404 to everyone; only an admin asking for ?admin_unsafely_bypass_quarantine=true sees it.
            raise not_found("Unknown media")
        if legacy and requester is None and info.authenticated:
            # Uploaded after the freeze: only the authenticated endpoints serve it.
            raise not_found("Unknown media")
        now = self.clock.time_ms()
        if info.last_access_ts is None or now - info.last_access_ts > ACCESS_TOUCH_INTERVAL_MS:
            await self.store.touch_media(info.origin, info.media_id, now)
        return info

    async def _wait_uploaded(self, info: MediaInfo, timeout_ms: int | None) -> MediaInfo:
        timeout = DEFAULT_TIMEOUT_MS if timeout_ms is None else max(0, min(timeout_ms, MAX_TIMEOUT_MS))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout / 1000
        key = (info.origin, info.media_id)
        while True:
            now = self.clock.time_ms()
            if info.unused_expires_ts is not None and info.unused_expires_ts <= now and not info.uploaded:
                raise not_found("Unknown media")
            if info.uploaded:
                return info
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
            event = self._upload_events.get(key)
            if event is None:
                event = asyncio.Event()
                self._upload_events[key] = event
            try:
                # Wake on an upload in this process; re-read the row at least every second for
                # uploads handled by another media worker.
                async with asyncio.timeout(min(remaining, 1.0)):
                    await event.wait()
            except TimeoutError:
                pass
            fresh = await self.store.get_media(*key)
            if fresh is None:
                raise not_found("Unknown media")
            info = fresh

    # -- remote media ---------------------------------------------------------------------

    def _fs_origin(self, info: MediaInfo) -> str | None:
        """The media store keeps local files under local_*, remote ones under remote_*/<origin>."""
        return None if info.origin == self.server_name else info.origin

    async def purge_remote_cache(self, before_ts: int) -> int:
        """Delete cached remote media not accessed since `before_ts` (refetched on demand)."""
        deleted = 0
        while True:
            batch = await self.store.list_purgeable_remote_media(self.server_name, before_ts)
            if not batch:
                break
            progressed = 0
            for origin, media_id in batch:
                if await self.delete_media(origin, media_id):
                    progressed += 1
            deleted += progressed
            if not progressed:
                break
        logger.info("purged %d cached remote media item(s) last used before %d", deleted, before_ts)
        return deleted

    # -- downloads (continued) --------------------------------------------------------------

    async def download(
        self,
        requester: Requester | None,
        server_name: str,
        media_id: str,
        *,
        legacy: bool = False,
        filename: str | None = None,
        timeout_ms: int | None = None,
        bypass_quarantine: bool = False,
        allow_remote: bool = True,
    ) -> Download:
        info = await self._readable(
            requester,
            server_name,
            media_id,
            legacy=legacy,
            timeout_ms=timeout_ms,
            bypass_quarantine=bypass_quarantine,
            allow_remote=allow_remote,
        )
        path = self.storage.content_path(self._fs_origin(info), info.filesystem_id)
        media_type = served_content_type(info.media_type)
        name = filename if filename is not None else info.upload_name
        try:
            length = await self.storage.size(path)
        except FileNotFoundError as exc:
            logger.error("media %s/%s has a row but no file at %s", server_name, media_id, path)
            raise not_found("Unknown media") from exc
        return Download(
            self.storage,
            path,
            media_type,
            length,
            content_disposition(media_type, name),
            etag=info.sha256,
        )

    # -- thumbnails -----------------------------------------------------------------------

    async def thumbnail(
        self,
        requester: Requester | None,
        server_name: str,
        media_id: str,
        *,
        width: int,
        height: int,
        method: str,
        animated: bool | None = None,
        legacy: bool = False,
        timeout_ms: int | None = None,
        bypass_quarantine: bool = False,
        allow_remote: bool = True,
    ) -> Download:
        if width < 1 or height < 1:
            raise MatrixError(400, "M_INVALID_PARAM", "width and height must be positive integers")
        if method not in ("crop", "scale"):
            raise MatrixError(400, "M_INVALID_PARAM", "method must be 'crop' or 'scale'")
        info = await self._readable(
            requester,
            server_name,
            media_id,
            legacy=legacy,
            timeout_ms=timeout_ms,
            bypass_quarantine=bypass_quarantine,
            allow_remote=allow_remote,
        )
        static_type = thumbnails.thumbnail_type(base_type(info.media_type or ""))
        if static_type is None:
            raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content")
        fs_origin = self._fs_origin(info)
        source = self.storage.content_path(fs_origin, info.filesystem_id)
        probe = await self._probe(info, source)
        want_animated = bool(animated) and probe.animated
        if (
            probe.width <= width
            and probe.height <= height
            and probe.format in thumbnails.SERVABLE_AS_IS
            and (want_animated or not probe.animated)
        ):
            # Already small enough: the original, as the spec asks (never upscaled).
            media_type = thumbnails.FORMAT_TYPES[probe.format]
            return Download(
                self.storage,
                source,
                media_type,
                await self.storage.size(source),
                self._thumb_disposition(media_type),
                etag=info.sha256,
            )
        target = thumbnails.select_target(
            probe.width,
            probe.height,
            width,
            height,
            method,
            self.sizes,
            dynamic=bool(self.config.dynamic_thumbnails),
            media_type=thumbnails.ANIMATED_TYPE if want_animated else static_type,
            animated=want_animated,
        )
        path = self.storage.thumbnail_path(
            fs_origin,
            info.filesystem_id,
            target.width,
            target.height,
            target.media_type,
            target.method,
            target.animated,
        )
        existing = await self._find_thumbnail(info, target)
        if existing is None or not await self.storage.exists(path):
            await self._generate_thumbnail(info, source, target, path)
        return Download(
            self.storage,
            path,
            target.media_type,
            await self.storage.size(path),
            self._thumb_disposition(target.media_type),
        )

    @staticmethod
    def _thumb_disposition(media_type: str) -> str:
        ext = THUMBNAIL_EXTENSIONS.get(media_type, "png")
        return content_disposition(media_type, f"thumbnail.{ext}", force_inline=True)

    async def _probe(self, info: MediaInfo, source: str) -> thumbnails.ImageProbe:
        key = (info.origin, info.media_id)
        cached = self._probes.get(key)
        if cached is not None:
            self._probes.move_to_end(key)
            return cached
        try:
            probe = await asyncio.to_thread(
                thumbnails.probe, self.storage.abspath(source), self.max_image_pixels
            )
        except thumbnails.ImageTooLarge as exc:
            if info.origin != self.server_name:
                # The spec's answer for remote content (ours is 413).
                raise MatrixError(502, "M_TOO_LARGE", "Content is too large to thumbnail") from exc
            raise too_large("Content is too large to thumbnail") from exc
        except thumbnails.ThumbnailError as exc:
            raise MatrixError(
                400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content"
            ) from exc
        self._probes[key] = probe
        if len(self._probes) > PROBE_CACHE_SIZE:
            self._probes.popitem(last=False)
        return probe

    async def _find_thumbnail(self, info: MediaInfo, target: thumbnails.Target) -> ThumbnailInfo | None:
        for thumb in await self.store.list_thumbnails(info.origin, info.media_id):
            if (thumb.width, thumb.height, thumb.method, thumb.media_type, thumb.animated) == (
                target.width,
                target.height,
                target.method,
                target.media_type,
                target.animated,
            ):
                return thumb
        return None

    async def _generate_thumbnail(
        self, info: MediaInfo, source: str, target: thumbnails.Target, path: str
    ) -> None:
        key = (info.origin, info.media_id, target)
        lock = self._thumb_locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._thumb_locks[key] = lock
        async with lock:
            # Another request may have produced it while we waited for the lock.
            if await self._find_thumbnail(info, target) is not None and await self.storage.exists(path):
                return
            async with self._thumb_slots:
                try:
                    data = await asyncio.to_thread(
                        thumbnails.generate, self.storage.abspath(source), target, self.max_image_pixels
                    )
                except thumbnails.ImageTooLarge as exc:
                    raise too_large("Content is too large to thumbnail") from exc
                except thumbnails.ThumbnailError as exc:
                    raise MatrixError(
                        400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content"
                    ) from exc
            await self.storage.write_bytes(path, data)
            await self.store.insert_thumbnail(
                info.origin,
                info.media_id,
                ThumbnailInfo(
                    target.width, target.height, target.method, target.media_type, target.animated, len(data)
                ),
                self.clock.time_ms(),
            )

    # -- admin (api/admin/media.py) --------------------------------------------------------

    async def quarantine_if_known_bad(self, origin: str, media_id: str, sha256: str) -> None:
        """Content an admin quarantined stays quarantined when uploaded (or fetched) again."""
        by_user = await self.store.quarantined_by_for_hash(sha256)
        if by_user is not None:
            await self.store.set_quarantined(origin, media_id, by_user)
            logger.info("media %s/%s matches quarantined content: quarantined", origin, media_id)

    async def quarantine_media(self, origin: str, media_id: str, by_user: str) -> bool:
        done = await self.store.set_quarantined(origin, media_id, by_user)
        if done:
            logger.info("media %s/%s quarantined by %s", origin, media_id, by_user)
        return done

    async def unquarantine_media(self, origin: str, media_id: str) -> bool:
        return await self.store.set_quarantined(origin, media_id, None)

    async def protect_media(self, origin: str, media_id: str, protected: bool = True) -> bool:
        return await self.store.set_safe_from_quarantine(origin, media_id, protected)

    async def quarantine_user_media(self, user_id: str, by_user: str) -> int:
        count = await self.store.quarantine_by_user(user_id, by_user)
        logger.info("%d media item(s) of %s quarantined by %s", count, user_id, by_user)
        return count

    async def delete_media(self, origin: str, media_id: str) -> bool:
        """Delete the row, the file (unless shared) and every thumbnail."""
        info = await self.store.get_media(origin, media_id)
        if info is None:
            return False
        local_origin = None if origin == self.server_name else origin
        await self.store.delete_media(origin, media_id)
        if not await self.store.count_other_uses_of_file(origin, media_id, info.filesystem_id):
            await self.storage.delete(self.storage.content_path(local_origin, info.filesystem_id))
            await self.storage.delete_tree(self.storage.thumbnail_dir(local_origin, info.filesystem_id))
        self._probes.pop((origin, media_id), None)
        logger.info("media %s/%s deleted", origin, media_id)
        return True

    async def delete_user_media(self, user_id: str) -> int:
        deleted = 0
        while True:
            batch = await self.store.list_media_by_user(user_id, limit=500)
            if not batch:
                return deleted
            for info in batch:
                if await self.delete_media(info.origin, info.media_id):
                    deleted += 1
