"""URL previews: fetch a page through the SSRF-guarded client, extract OpenGraph, cache.

Off unless `url_preview_enabled`. Every fetch (the page, each redirect hop, the preview
image) goes through `OutboundClient`, which refuses blacklisted addresses at connect time.
Results and failures are cached per URL (in the database, so every worker shares them), and
concurrent requests for one URL share one fetch.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from homeserver.core import json as hjson
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.http.outbound import (
    BlockedDestinationError,
    OutboundClient,
    OutboundError,
    ResponseTooLargeError,
)
from homeserver.media import thumbnails
from homeserver.media.ids import mxc_uri
from homeserver.media.preview_html import MAX_HTML_BYTES, parse_html
from homeserver.metrics.usage import background_process
from homeserver.storage.stores.media import MediaStore, UrlPreviewRow

logger = logging.getLogger(__name__)

SUCCESS_TTL_MS = 3600 * 1000  # Synapse keeps previews for an hour
FAILURE_TTL_MS = 10 * 60 * 1000
MAX_URL_LENGTH = 2048
HTML_TYPES = ("text/html", "application/xhtml+xml")
USER_AGENT = "Mozilla/5.0 (compatible; homeserver URL preview bot)"


def url_blocked_by_pattern(url: str, blacklist: tuple[Mapping[str, str], ...]) -> bool:
    """Synapse's `url_preview_url_blacklist`: an entry matches when all its components match."""
    if not blacklist:
        return False
    parts = urlsplit(url)
    values: dict[str, Any] = {
        "scheme": parts.scheme,
        "netloc": parts.netloc,
        "username": parts.username,
        "password": parts.password,
        "hostname": parts.hostname,
        "port": parts.port,
        "path": parts.path,
        "params": "",
        "query": parts.query,
        "fragment": parts.fragment,
    }
    for entry in blacklist:
        matched = True
        for component, pattern in entry.items():
            value = values.get(component)
            if value is None:
                matched = False
                break
            text = str(value)
            if pattern.startswith("^"):
                if not re.match(pattern, text):
                    matched = False
                    break
            elif not fnmatch.fnmatch(text, pattern):
                matched = False
                break
        if matched:
            return True
    return False


class UrlPreviewService:
    def __init__(
        self,
        repo: Any,  # MediaRepository (imported lazily to keep the modules independent)
        store: MediaStore,
        outbound: OutboundClient,
        clock: Clock,
        *,
        enabled: bool,
        max_spider_size: int,
        accept_language: tuple[str, ...],
        url_blacklist: tuple[Mapping[str, str], ...] = (),
    ) -> None:
        self.repo = repo
        self.store = store
        self.outbound = outbound
        self.clock = clock
        self.enabled = enabled
        self.max_spider_size = max_spider_size
        self.accept_language = accept_language
        self.url_blacklist = url_blacklist
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await self.outbound.close()

    async def preview(self, user_id: str, url: str, ts: int | None = None) -> dict[str, Any]:
        if not self.enabled:
            raise MatrixError(404, "M_UNRECOGNIZED", "URL previews are disabled")
        url = url.strip()
        if len(url) > MAX_URL_LENGTH:
            raise MatrixError(400, "M_INVALID_PARAM", "URL is too long")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MatrixError(400, "M_INVALID_PARAM", "Only http and https URLs can be previewed")
        if url_blocked_by_pattern(url, self.url_blacklist):
            raise MatrixError(403, "M_UNKNOWN", "URL blocked by url pattern blacklist entry")
        now = self.clock.time_ms()
        cached = await self.store.get_url_preview(url)
        if cached is not None and cached.expires_ts > now:
            return self._from_row(cached)
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.ensure_future(
                background_process("url_preview", self._fetch_and_cache(user_id, url))
            )
            self._inflight[url] = task
            task.add_done_callback(functools.partial(self._done, url))
        return dict(await asyncio.shield(task))

    def _done(self, url: str, task: asyncio.Task[dict[str, Any]]) -> None:
        self._inflight.pop(url, None)
        if not task.cancelled():
            task.exception()  # retrieved even when every requester went away

    @staticmethod
    def _from_row(row: UrlPreviewRow) -> dict[str, Any]:
        if row.og is None:
            raise MatrixError(row.error_status or 502, row.error_code or "M_UNKNOWN", row.error or "")
        og: dict[str, Any] = hjson.loads(row.og)
        return og

    async def _fetch_and_cache(self, user_id: str, url: str) -> dict[str, Any]:
        now = self.clock.time_ms()
        try:
            og, media_id = await self._fetch(user_id, url)
        except MatrixError as err:
            await self.store.upsert_url_preview(
                UrlPreviewRow(url, now, now + FAILURE_TTL_MS, None, err.status, err.errcode, err.error, None)
            )
            raise
        await self.store.upsert_url_preview(
            UrlPreviewRow(url, now, now + SUCCESS_TTL_MS, hjson.dumps_str(og), None, None, None, media_id)
        )
        return og

    def _headers(self) -> dict[str, str]:
        return {
            "Accept-Language": ", ".join(self.accept_language) or "en",
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.5",
        }

    async def _get(self, url: str) -> Any:
        try:
            result = await self.outbound.get(url, max_size=self.max_spider_size, headers=self._headers())
        except BlockedDestinationError as exc:
            logger.info("URL preview of %s refused: %s", url, exc.reason)
            raise MatrixError(403, "M_UNKNOWN", "IP address blocked by IP blacklist entry") from exc
        except ResponseTooLargeError as exc:
            raise MatrixError(502, "M_TOO_LARGE", "The page is too large to preview") from exc
        except OutboundError as exc:
            raise MatrixError(502, "M_UNKNOWN", f"Failed to download content: {exc.reason}") from exc
        if not 200 <= result.status < 300:
            raise MatrixError(502, "M_UNKNOWN", f"Failed to download content: HTTP {result.status}")
        return result

    async def _fetch(self, user_id: str, url: str) -> tuple[dict[str, Any], str | None]:
        result = await self._get(url)
        content_type = result.content_type
        if content_type.startswith("image/"):
            image = await self._store_image(user_id, url, result.body, content_type)
            return image, image.pop("_media_id", None)
        if content_type in HTML_TYPES or (not content_type and b"<html" in result.body[:2048].lower()):
            charset = _charset(result.headers.get("Content-Type", ""))
            og = parse_html(result.body[:MAX_HTML_BYTES], result.url, charset)
            media_id = None
            image_url = og.pop("og:image", None)
            for key in ("og:image:width", "og:image:height", "og:image:type"):
                og.pop(key, None)
            if image_url:
                try:
                    fetched = await self._get(image_url)
                    if fetched.content_type.startswith("image/"):
                        image = await self._store_image(
                            user_id, image_url, fetched.body, fetched.content_type
                        )
                        media_id = image.pop("_media_id", None)
                        og.update(image)
                except MatrixError as err:
                    logger.info("preview image %s of %s skipped: %s", image_url, url, err.error)
            return og, media_id
        return {}, None

    async def _store_image(self, user_id: str, url: str, body: bytes, content_type: str) -> dict[str, Any]:
        media_id, length = await self.repo.store_local_bytes(
            user_id,
            body,
            content_type,
            url_cache=url,
        )
        og: dict[str, Any] = {
            "og:image": mxc_uri(self.repo.server_name, media_id),
            "og:image:type": content_type,
            "matrix:image:size": length,
            "_media_id": media_id,
        }
        path = self.repo.storage.abspath(self.repo.storage.content_path(None, media_id))
        try:
            probe = await asyncio.to_thread(thumbnails.probe, path, self.repo.max_image_pixels)
        except thumbnails.ThumbnailError:
            return og
        og["og:image:width"] = probe.width
        og["og:image:height"] = probe.height
        return og


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None
