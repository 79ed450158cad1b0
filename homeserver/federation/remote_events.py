"""Pulling events from another server: the requests the inbound pipeline makes to fill gaps.

`RemoteEvents` wraps the federation client for /get_missing_events, /state_ids, /state, /event,
/event_auth and /backfill. Every response is shape-checked here; the PDUs in it are returned as
untrusted dicts for `check_pdu`. Any failure (unreachable, error status, malformed body) is a
`RemoteFetchError`, which callers treat as "the server could not help".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import FederationClient, FederationError

# Bounds on what one response may hand us (a hostile server must not make us hold a huge list).
MAX_PDUS_PER_RESPONSE = 10_000
FED_V1 = "/_matrix/federation/v1"


class RemoteFetchError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RemoteStateIds:
    state_ids: list[str]
    auth_chain_ids: list[str]


@dataclass(frozen=True, slots=True)
class RemoteState:
    pdus: list[dict[str, Any]]
    auth_chain: list[dict[str, Any]]


class EventSource(Protocol):
    """What the event handler needs from other servers (tests substitute fakes)."""

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        earliest: Sequence[str],
        latest: Sequence[str],
        *,
        limit: int,
        min_depth: int,
    ) -> list[dict[str, Any]]: ...

    async def get_state_ids(self, destination: str, room_id: str, event_id: str) -> RemoteStateIds: ...

    async def get_state(self, destination: str, room_id: str, event_id: str) -> RemoteState: ...

    async def get_event(self, destination: str, event_id: str) -> dict[str, Any]: ...

    async def get_event_auth(self, destination: str, room_id: str, event_id: str) -> list[dict[str, Any]]: ...

    async def backfill(
        self, destination: str, room_id: str, event_ids: Sequence[str], limit: int
    ) -> list[dict[str, Any]]: ...


def _pdu_list(body: Any, name: str) -> list[dict[str, Any]]:
    value = body.get(name) if isinstance(body, Mapping) else None
    if not isinstance(value, list) or len(value) > MAX_PDUS_PER_RESPONSE:
        raise RemoteFetchError(f"response has no usable '{name}' list")
    return [p for p in value if isinstance(p, dict)]


def _id_list(body: Any, name: str) -> list[str]:
    value = body.get(name) if isinstance(body, Mapping) else None
    if not isinstance(value, list) or len(value) > MAX_PDUS_PER_RESPONSE:
        raise RemoteFetchError(f"response has no usable '{name}' list")
    return [e for e in value if isinstance(e, str)]


def _q(value: str) -> str:
    return quote(value, safe="")


class RemoteEvents:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    # Pulls for a received PDU go to the server that just sent it to us: it is up, whatever its
    # backoff says (Synapse resets the backoff of a server it hears from). Backfill respects it.
    async def _get(
        self,
        destination: str,
        path: str,
        args: Mapping[str, str | list[str]] | None = None,
        *,
        ignore_backoff: bool = True,
    ) -> Any:
        try:
            return await self.client.get_json(destination, path, args, ignore_backoff=ignore_backoff)
        except (FederationError, NotRetryingDestination) as exc:
            raise RemoteFetchError(str(exc)) from exc

    async def _post(self, destination: str, path: str, body: Mapping[str, Any]) -> Any:
        try:
            return await self.client.post_json(destination, path, body, ignore_backoff=True)
        except (FederationError, NotRetryingDestination) as exc:
            raise RemoteFetchError(str(exc)) from exc

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        earliest: Sequence[str],
        latest: Sequence[str],
        *,
        limit: int,
        min_depth: int,
    ) -> list[dict[str, Any]]:
        body = await self._post(
            destination,
            f"{FED_V1}/get_missing_events/{_q(room_id)}",
            {
                "earliest_events": list(earliest),
                "latest_events": list(latest),
                "limit": limit,
                "min_depth": min_depth,
            },
        )
        return _pdu_list(body, "events")[:limit]

    async def get_state_ids(self, destination: str, room_id: str, event_id: str) -> RemoteStateIds:
        body = await self._get(destination, f"{FED_V1}/state_ids/{_q(room_id)}", {"event_id": event_id})
        return RemoteStateIds(_id_list(body, "pdu_ids"), _id_list(body, "auth_chain_ids"))

    async def get_state(self, destination: str, room_id: str, event_id: str) -> RemoteState:
        body = await self._get(destination, f"{FED_V1}/state/{_q(room_id)}", {"event_id": event_id})
        return RemoteState(_pdu_list(body, "pdus"), _pdu_list(body, "auth_chain"))

    async def get_event(self, destination: str, event_id: str) -> dict[str, Any]:
        body = await self._get(destination, f"{FED_V1}/event/{_q(event_id)}")
        pdus = _pdu_list(body, "pdus")
        if len(pdus) != 1:
            raise RemoteFetchError(f"/event returned {len(pdus)} PDUs")
        return pdus[0]

    async def get_event_auth(self, destination: str, room_id: str, event_id: str) -> list[dict[str, Any]]:
        body = await self._get(destination, f"{FED_V1}/event_auth/{_q(room_id)}/{_q(event_id)}")
        return _pdu_list(body, "auth_chain")

    async def backfill(
        self, destination: str, room_id: str, event_ids: Sequence[str], limit: int
    ) -> list[dict[str, Any]]:
        body = await self._get(
            destination,
            f"{FED_V1}/backfill/{_q(room_id)}",
            {"v": list(event_ids), "limit": str(limit)},
            ignore_backoff=False,
        )
        return _pdu_list(body, "pdus")[:limit]
