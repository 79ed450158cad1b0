"""Builds the media repository and its collaborators from the config (used by the container)."""

from __future__ import annotations

from homeserver.config.sections import HomeserverConfig
from homeserver.core.clock import Clock
from homeserver.federation.client import FederationClient
from homeserver.http.outbound import IPFilter, OutboundClient
from homeserver.media.filestore import LocalMediaStorage
from homeserver.media.preview import UrlPreviewService
from homeserver.media.remote import RemoteMediaFetcher
from homeserver.media.remote_cache import RemoteMediaCache
from homeserver.media.repository import MediaRepository
from homeserver.media.scanner import ClamdScanner
from homeserver.storage.database import Database
from homeserver.storage.stores.media import MediaStore

PREVIEW_TIMEOUT_S = 10.0
PREVIEW_MAX_REDIRECTS = 5


def build_media_repository(
    config: HomeserverConfig, db: Database, clock: Clock, federation: FederationClient | None = None
) -> MediaRepository:
    """`federation`: the client remote media is fetched with (without it, remote media is 404)."""
    options = config.media
    scanner = None
    if options.clamd.enabled:
        scanner = ClamdScanner(
            socket_path=options.clamd.socket,
            host=options.clamd.host,
            port=options.clamd.port,
            timeout=options.clamd.timeout / 1000,
        )
    store = MediaStore(db)
    storage = LocalMediaStorage(config.media_store_path)
    repo = MediaRepository(config, store, storage, clock, scanner=scanner)
    if federation is not None:
        fetcher = RemoteMediaFetcher(federation, storage, max_size=config.max_upload_size)
        repo.remote = RemoteMediaCache(repo, fetcher)
    outbound = OutboundClient(
        IPFilter(config.url_preview_ip_range_blacklist, config.url_preview_ip_range_whitelist),
        user_agent="homeserver URL preview",
        timeout=PREVIEW_TIMEOUT_S,
        max_redirects=PREVIEW_MAX_REDIRECTS,
    )
    repo.previews = UrlPreviewService(
        repo,
        store,
        outbound,
        clock,
        enabled=bool(config.url_preview_enabled),
        max_spider_size=options.max_spider_size,
        accept_language=options.url_preview_accept_language,
        url_blacklist=options.url_preview_url_blacklist,
    )
    return repo
