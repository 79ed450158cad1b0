"""Rooms as other servers describe them, for local clients: their published room directory
(`/publicRooms?server=`), the space hierarchy of rooms this server is not in, and the event
closest to a timestamp when we hold none (`/timestamp_to_event`).

Errors follow Synapse: a server outside `federation_domain_whitelist` is 403; a remote 403 on its
directory is "You are not allowed to view the public rooms list"; other remote 4xx answers are
passed on; an unreachable, backing-off, timed-out or garbled server is 502. A filtered directory
search is tried with POST (MSC2197) and, when the remote does not know it, done here over its full
GET listing. Every request has the client-query time limit, so a dead server never holds a client.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.events import constants as c
from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import FederationClient, FederationDenied, FederationError, RemoteHttpError
from homeserver.federation.queries import CLIENT_QUERY_TIMEOUT
from homeserver.state.current import CurrentStateCache, RoomSnapshot

logger = logging.getLogger(__name__)

FED_V1 = "/_matrix/federation/v1"
# Remote hierarchy answers are kept this long (the spec asks callers to cache them).
HIERARCHY_CACHE_SECONDS = 300.0
HIERARCHY_CACHE_SIZE = 1000
# Servers asked per remote hierarchy or timestamp lookup, at most.
MAX_SERVERS_TRIED = 5


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


@dataclass(frozen=True, slots=True)
class RemoteHierarchy:
    """One /hierarchy answer: the room (with `children_state`), the children summaries it gave,
    and the children it says are inaccessible."""

    room: dict[str, Any]
    children: dict[str, dict[str, Any]]
    inaccessible: frozenset[str]


def entry_matches(
    entry: Mapping[str, Any], search_term: str | None, room_types: Sequence[str | None] | None
) -> bool:
    """A public rooms chunk entry against a directory filter (for remotes without MSC2197)."""
    if room_types is not None and entry.get("room_type") not in room_types:
        return False
    if not search_term:
        return True
    texts = [entry.get(k) for k in ("name", "topic", "canonical_alias")]
    haystack = "\n".join(t for t in texts if isinstance(t, str)).casefold()
    return search_term.casefold() in haystack


def _valid_hierarchy_room(room: Any, room_id: str) -> bool:
    return (
        isinstance(room, dict)
        and room.get("room_id") == room_id
        and isinstance(room.get("num_joined_members"), int)
        and isinstance(room.get("children_state", []), list)
    )


class RemoteRooms:
    def __init__(self, client: FederationClient) -> None:
        self.client = client
        self._hierarchy_cache: OrderedDict[tuple[str, bool], tuple[float, RemoteHierarchy | None]] = (
            OrderedDict()
        )

    # -- published room directories ----------------------------------------------------------------

    async def public_rooms(
        self,
        server: str,
        *,
        limit: int | None = None,
        since: str | None = None,
        search_filter: Mapping[str, Any] | None = None,
        include_all_networks: bool = False,
        third_party_instance_id: str | None = None,
    ) -> dict[str, Any]:
        args: dict[str, str | list[str]] = {
            "include_all_networks": "true" if include_all_networks else "false"
        }
        if third_party_instance_id is not None:
            args["third_party_instance_id"] = third_party_instance_id
        if search_filter:
            body: dict[str, Any] = {
                "filter": dict(search_filter),
                "include_all_networks": include_all_networks,
            }
            if limit is not None:
                body["limit"] = limit
            if since is not None:
                body["since"] = since
            if third_party_instance_id is not None:
                body["third_party_instance_id"] = third_party_instance_id
            try:
                return self._chunk(await self._directory_request(server, "POST", None, body))
            except RemoteHttpError as exc:
                if not (exc.status in (404, 405) or exc.errcode in ("M_UNRECOGNIZED", "M_NOT_FOUND")):
                    raise self._directory_error(server, exc) from exc
            except (FederationError, NotRetryingDestination) as exc:
                raise self._directory_error(server, exc) from exc
            # The remote does not filter (no MSC2197): filter its whole listing here.
            try:
                listing = self._chunk(await self._directory_request(server, "GET", args, None))
            except (FederationError, NotRetryingDestination) as exc:
                raise self._directory_error(server, exc) from exc
            term = search_filter.get("generic_search_term")
            types = search_filter.get("room_types")
            listing["chunk"] = [
                e
                for e in listing["chunk"]
                if entry_matches(
                    e, term if isinstance(term, str) else None, types if isinstance(types, list) else None
                )
            ]
            listing.pop("next_batch", None)
            listing.pop("prev_batch", None)
            return listing
        if limit is not None:
            args["limit"] = str(limit)
        if since is not None:
            args["since"] = since
        try:
            return self._chunk(await self._directory_request(server, "GET", args, None))
        except (FederationError, NotRetryingDestination) as exc:
            raise self._directory_error(server, exc) from exc

    async def _directory_request(
        self, server: str, method: str, args: dict[str, str | list[str]] | None, body: dict[str, Any] | None
    ) -> Any:
        return await self.client.request(
            method, server, f"{FED_V1}/publicRooms", args, body, time_limit=CLIENT_QUERY_TIMEOUT
        )

    @staticmethod
    def _chunk(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("chunk"), list):
            raise MatrixError(502, "M_UNKNOWN", "Failed to fetch room list")
        body["chunk"] = [
            e for e in body["chunk"] if isinstance(e, dict) and isinstance(e.get("room_id"), str)
        ]
        return body

    @staticmethod
    def _directory_error(server: str, exc: Exception) -> MatrixError:
        if isinstance(exc, FederationDenied):
            return MatrixError(403, "M_FORBIDDEN", f"Federation denied with {server}.")
        if isinstance(exc, RemoteHttpError):
            if exc.status == 403:
                return MatrixError(
                    403, "M_FORBIDDEN", f"You are not allowed to view the public rooms list of {server}"
                )
            if 400 <= exc.status < 500:
                return MatrixError(exc.status, exc.errcode, str(exc.body.get("error", "")))
        logger.info("public rooms of %s: %s", server, exc)
        return MatrixError(502, "M_UNKNOWN", "Failed to fetch room list")

    # -- space hierarchies -------------------------------------------------------------------------

    async def hierarchy(
        self, room_id: str, via: Sequence[str], *, suggested_only: bool
    ) -> RemoteHierarchy | None:
        """The room's /hierarchy from the first of `via` that answers (cached), None when none does."""
        key = (room_id, suggested_only)
        cached = self._hierarchy_cache.get(key)
        now = self.client.clock.monotonic()
        if cached is not None and now - cached[0] < HIERARCHY_CACHE_SECONDS:
            return cached[1]
        result = None
        servers = [
            s for s in dict.fromkeys(via) if ids.is_valid_server_name(s) and s != self.client.server_name
        ]
        for server in servers[:MAX_SERVERS_TRIED]:
            try:
                body = await self.client.get_json(
                    server,
                    f"{FED_V1}/hierarchy/{_q(room_id)}",
                    {"suggested_only": "true" if suggested_only else "false"},
                    time_limit=CLIENT_QUERY_TIMEOUT,
                )
            except (FederationError, NotRetryingDestination) as exc:
                logger.info("hierarchy of %s from %s: %s", room_id, server, exc)
                continue
            result = self._parse_hierarchy(room_id, body)
            if result is not None:
                break
        self._hierarchy_cache[key] = (now, result)
        self._hierarchy_cache.move_to_end(key)
        while len(self._hierarchy_cache) > HIERARCHY_CACHE_SIZE:
            self._hierarchy_cache.popitem(last=False)
        return result

    async def hierarchy_lookup(
        self, room_id: str, via: Sequence[str], suggested_only: bool
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]], frozenset[str]] | None:
        """`hierarchy` in the shape services/spaces.py takes (`RemoteHierarchyLookup`)."""
        found = await self.hierarchy(room_id, via, suggested_only=suggested_only)
        return (found.room, found.children, found.inaccessible) if found is not None else None

    @staticmethod
    def _parse_hierarchy(room_id: str, body: Any) -> RemoteHierarchy | None:
        if not isinstance(body, dict) or not _valid_hierarchy_room(body.get("room"), room_id):
            return None
        children: dict[str, dict[str, Any]] = {}
        raw_children = body.get("children")
        for child in raw_children if isinstance(raw_children, list) else []:
            if (
                isinstance(child, dict)
                and isinstance(child.get("room_id"), str)
                and _valid_hierarchy_room(child, child["room_id"])
            ):
                children[child["room_id"]] = child
        raw_inaccessible = body.get("inaccessible_children")
        inaccessible = frozenset(
            r for r in (raw_inaccessible if isinstance(raw_inaccessible, list) else []) if isinstance(r, str)
        )
        return RemoteHierarchy(body["room"], children, inaccessible)

    # -- timestamps --------------------------------------------------------------------------------

    async def timestamp_to_event(
        self, room_id: str, servers: Sequence[str], ts: int, *, forwards: bool
    ) -> dict[str, Any] | None:
        """The first sound answer of `servers` to /timestamp_to_event, None when none has one."""
        for server in [s for s in servers if s != self.client.server_name][:MAX_SERVERS_TRIED]:
            try:
                body = await self.client.get_json(
                    server,
                    f"{FED_V1}/timestamp_to_event/{_q(room_id)}",
                    {"ts": str(ts), "dir": "f" if forwards else "b"},
                    time_limit=CLIENT_QUERY_TIMEOUT,
                )
            except (FederationError, NotRetryingDestination) as exc:
                logger.info("timestamp_to_event in %s from %s: %s", room_id, server, exc)
                continue
            event_id = body.get("event_id") if isinstance(body, dict) else None
            found_ts = body.get("origin_server_ts") if isinstance(body, dict) else None
            if (
                isinstance(event_id, str)
                and ids.is_valid_event_id(event_id)
                and isinstance(found_ts, int)
                and not isinstance(found_ts, bool)
                and (found_ts >= ts if forwards else found_ts <= ts)
            ):
                return {"event_id": event_id, "origin_server_ts": found_ts}
        return None


def hosts_by_join(snapshot: RoomSnapshot, exclude: str) -> list[str]:
    """The servers with users joined to the room, those in it longest (by the depth of their
    earliest current join) first: the most likely to hold old history."""
    first: dict[str, int] = {}
    for (etype, user_id), event in snapshot.state.items():
        if etype != c.MEMBER or event.membership != c.JOIN:
            continue
        server = ids.server_of(user_id)
        if server and server != exclude:
            first[server] = min(first.get(server, event.depth), event.depth)
    return sorted(first, key=lambda s: (first[s], s))


class RemoteTimestamps:
    """The client /timestamp_to_event fallback: when no local event fits, ask the room's servers.

    Best effort: the answer is the remote's event id and timestamp; fetching that event into the
    local DAG is left to the client's next /context or /messages (backfill)."""

    def __init__(self, state: CurrentStateCache, remote: RemoteRooms, *, server_name: str) -> None:
        self.state = state
        self.remote = remote
        self.server_name = server_name

    async def lookup(self, room_id: str, ts: int, forwards: bool) -> dict[str, Any] | None:
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            return None
        servers = hosts_by_join(snapshot, self.server_name)
        if not servers:
            return None
        return await self.remote.timestamp_to_event(room_id, servers, ts, forwards=forwards)
