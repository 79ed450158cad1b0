"""Downloading remote media over federation into a temp file (the repository caches it).

As the spec (server-server "Content Repository") asks: first the authenticated
`/_matrix/federation/v1/media/download/{mediaId}` (a signed request; the answer is
`multipart/mixed`: JSON metadata, then the media or a `Location` to fetch it from), then, when the
remote does not know that endpoint (404/405 M_UNRECOGNIZED, or Synapse's older 400
M_UNRECOGNIZED), the deprecated `/_matrix/media/v3/download/{serverName}/{mediaId}` with
`allow_remote=false`. A `Location` is followed only through the SSRF-guarded client.

Limits: `max_upload_size` bytes of media (more is 502 M_TOO_LARGE, Synapse's answer, and the
transfer is abandoned at that point); the remote must start answering, and keep sending, within
`timeout_ms`; the whole transfer within DOWNLOAD_TIMEOUT. Errors become the client's answer:
404 M_NOT_FOUND when the remote does not have it, 502 when it cannot be reached (or is backing
off), 504 when it timed out or the media is not uploaded yet, 403 outside
`federation_domain_whitelist`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

from homeserver.core.errors import MatrixError, not_found
from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import (
    FederationClient,
    FederationDenied,
    FederationError,
    RemoteHttpError,
    RequestTimedOut,
    ResponseTooLarge,
    StreamedResponse,
)
from homeserver.media.filestore import LocalMediaStorage, TempFile, UploadTooLarge
from homeserver.media.headers import filename_from_disposition, normalise_content_type
from homeserver.media.multipart import MediaMultipart, MultipartError, boundary_of

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 300.0  # seconds for one whole transfer, redirect included
MULTIPART_OVERHEAD = 128 * 1024  # framing, headers and the JSON part around the media


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """Downloaded media in a temp file of the media store, not yet scanned or committed."""

    temp: TempFile
    media_type: str
    upload_name: str | None


@dataclass(frozen=True, slots=True)
class _Redirect:
    location: str


def _unknown_endpoint(exc: RemoteHttpError) -> bool:
    """Synapse's `is_unknown_endpoint`: the remote predates authenticated media."""
    errcode = exc.body.get("errcode")
    if exc.status in (404, 405):
        return errcode is None or errcode == "M_UNRECOGNIZED"
    return exc.status == 400 and errcode == "M_UNRECOGNIZED"


def _failed(reason: str = "Failed to fetch remote media") -> MatrixError:
    return MatrixError(502, "M_UNKNOWN", reason)


class RemoteMediaFetcher:
    def __init__(self, client: FederationClient, storage: LocalMediaStorage, *, max_size: int) -> None:
        self.client = client
        self.storage = storage
        self.max_size = max_size

    async def fetch(self, origin: str, media_id: str, *, timeout_ms: int) -> RemoteFile:
        """Download `mxc://origin/media_id` into a temp file; a MatrixError when that fails.

        The caller owns the temp file (commit or discard it)."""
        idle = max(timeout_ms, 1000) / 1000
        try:
            try:
                return await self._authenticated(origin, media_id, timeout_ms, idle)
            except RemoteHttpError as exc:
                if not _unknown_endpoint(exc):
                    raise
                logger.info("%s has no authenticated media endpoint; using the legacy one", origin)
            return await self._legacy(origin, media_id, timeout_ms, idle)
        except FederationDenied as exc:
            raise MatrixError(403, "M_FORBIDDEN", f"Federation denied with {origin}.") from exc
        except NotRetryingDestination as exc:
            logger.info("not fetching mxc://%s/%s: %s", origin, media_id, exc)
            raise _failed() from exc
        except (ResponseTooLarge, UploadTooLarge) as exc:
            logger.warning("mxc://%s/%s is larger than %d bytes: refused", origin, media_id, self.max_size)
            raise MatrixError(
                502, "M_TOO_LARGE", f"Requested file is too large > {self.max_size} bytes"
            ) from exc
        except RequestTimedOut as exc:
            logger.info("fetching mxc://%s/%s timed out", origin, media_id)
            raise MatrixError(504, "M_UNKNOWN", "Timed out fetching remote media") from exc
        except RemoteHttpError as exc:
            logger.info("fetching mxc://%s/%s: %s", origin, media_id, exc)
            if exc.status == 404:
                raise not_found("Unknown media") from exc
            if exc.status == 504 and exc.errcode == "M_NOT_YET_UPLOADED":
                raise MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded") from exc
            raise _failed() from exc
        except MultipartError as exc:
            logger.warning("mxc://%s/%s: unusable answer from the remote: %s", origin, media_id, exc)
            raise _failed("The remote server sent an invalid media response") from exc
        except FederationError as exc:
            logger.info("fetching mxc://%s/%s failed: %s", origin, media_id, exc)
            raise _failed() from exc

    async def _authenticated(self, origin: str, media_id: str, timeout_ms: int, idle: float) -> RemoteFile:
        result = await self.client.get_streamed(
            origin,
            f"/_matrix/federation/v1/media/download/{quote(media_id, safe='')}",
            {"timeout_ms": str(timeout_ms)},
            self._read_multipart,
            max_size=self.max_size + MULTIPART_OVERHEAD,
            idle_timeout=idle,
            total_timeout=DOWNLOAD_TIMEOUT,
        )
        if isinstance(result, RemoteFile):
            return result
        # Not cached: the spec says such URLs may expire.
        return await self.client.get_url_streamed(
            result.location,
            self._read_plain,
            max_size=self.max_size,
            idle_timeout=idle,
            total_timeout=DOWNLOAD_TIMEOUT,
        )

    async def _legacy(self, origin: str, media_id: str, timeout_ms: int, idle: float) -> RemoteFile:
        return await self.client.get_streamed(
            origin,
            f"/_matrix/media/v3/download/{quote(origin, safe='')}/{quote(media_id, safe='')}",
            {"allow_remote": "false", "timeout_ms": str(timeout_ms)},
            self._read_plain,
            max_size=self.max_size,
            idle_timeout=idle,
            total_timeout=DOWNLOAD_TIMEOUT,
        )

    async def _read_multipart(self, resp: StreamedResponse) -> RemoteFile | _Redirect:
        boundary = boundary_of(resp.headers.get("Content-Type"))
        if boundary is None:
            raise MultipartError("the answer is not multipart/mixed")
        reader = MediaMultipart(resp.chunks(), boundary)
        await reader.metadata()
        headers = await reader.media_headers()
        location = headers.get("location")
        if location:
            return _Redirect(location)
        temp = await self._write(reader.media_chunks())
        return RemoteFile(
            temp,
            normalise_content_type(headers.get("content-type")),
            filename_from_disposition(headers.get("content-disposition")),
        )

    async def _read_plain(self, resp: StreamedResponse) -> RemoteFile:
        temp = await self._write(resp.chunks())
        return RemoteFile(
            temp,
            normalise_content_type(resp.headers.get("Content-Type")),
            filename_from_disposition(resp.headers.get("Content-Disposition")),
        )

    async def _write(self, chunks: AsyncIterator[bytes]) -> TempFile:
        return await self.storage.write_temp(chunks, self.max_size)
