"""Client-facing lookups answered by another server (`/_matrix/federation/v1/query/*`).

Errors follow Synapse: a remote error status is passed on (profiles) or becomes 404/502
(aliases); an unreachable, backing-off or timed-out server is 502; a server outside
`federation_domain_whitelist` is 403. Lookups have a short time limit so a client never waits
long for a dead server.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import FederationClient, FederationDenied, FederationError, RemoteHttpError

logger = logging.getLogger(__name__)

CLIENT_QUERY_TIMEOUT = 10.0  # seconds


def _denied(exc: FederationDenied) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", f"Federation denied with {exc.destination}.")


class RemoteQueries:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def profile(self, user_id: str, field: str | None = None) -> dict[str, Any]:
        destination = ids.server_of(user_id)
        args = {"user_id": user_id} | ({"field": field} if field else {})
        try:
            body = await self.client.get_json(
                destination, "/_matrix/federation/v1/query/profile", args, time_limit=CLIENT_QUERY_TIMEOUT
            )
        except FederationDenied as exc:
            raise _denied(exc) from exc
        except RemoteHttpError as exc:
            if 400 <= exc.status < 500:
                raise MatrixError(exc.status, exc.errcode, str(exc.body.get("error", ""))) from exc
            raise MatrixError(502, "M_UNKNOWN", "Failed to fetch profile") from exc
        except (FederationError, NotRetryingDestination) as exc:
            logger.info("profile lookup of %s failed: %s", user_id, exc)
            raise MatrixError(502, "M_UNKNOWN", "Failed to fetch profile") from exc
        if not isinstance(body, dict):
            raise MatrixError(502, "M_UNKNOWN", "Failed to fetch profile")
        return {k: v for k, v in body.items() if k in ("displayname", "avatar_url") and isinstance(v, str)}

    async def directory(self, alias: str) -> dict[str, Any]:
        destination = ids.server_of(alias)
        try:
            body = await self.client.get_json(
                destination,
                "/_matrix/federation/v1/query/directory",
                {"room_alias": alias},
                time_limit=CLIENT_QUERY_TIMEOUT,
            )
        except FederationDenied as exc:
            raise _denied(exc) from exc
        except RemoteHttpError as exc:
            if exc.status == 404:
                raise MatrixError(404, "M_NOT_FOUND", f"Room alias {alias} not found") from exc
            raise MatrixError(502, "M_UNKNOWN", "Unable to communicate with remote server") from exc
        except (FederationError, NotRetryingDestination) as exc:
            logger.info("alias lookup of %s failed: %s", alias, exc)
            raise MatrixError(502, "M_UNKNOWN", "Unable to communicate with remote server") from exc
        room_id = body.get("room_id") if isinstance(body, dict) else None
        servers = body.get("servers") if isinstance(body, dict) else None
        if not isinstance(room_id, str) or not ids.is_valid_room_id(room_id):
            raise MatrixError(404, "M_NOT_FOUND", f"Room alias {alias} not found")
        servers = [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else []
        return {"room_id": room_id, "servers": servers or [destination]}
