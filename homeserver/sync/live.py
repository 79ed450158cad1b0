"""Sync pushed over a live connection (WebSocket sync, docs/websocket.md), on the /sync machinery.

`SyncPushStream` is a loop over `SyncService.sync`: each call is an ordinary incremental sync from
the token of the previous response, long-polling on the notifier, so filters, lazy members,
`set_presence` and every extension behave exactly as for `GET /sync`. The caller sends a response
and only then asks for the next one: while a slow reader drains, nothing is computed or queued, and
whatever happened meanwhile arrives as ONE delta since the last token sent (with `limited`
timelines and `prev_batch`, as /sync gives a client that polled late). Memory per connection is
therefore one response at most, whatever the backlog.

`LiveConnections` knows the open connections by user and token, so a logout, a deleted device or
a deactivation elsewhere closes them at once, and shutdown closes them all.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, replace
from typing import Any, Protocol

from homeserver.core.tokens import StreamToken
from homeserver.sync import metrics as sync_metrics
from homeserver.sync.service import SyncRequest, SyncService

_connection_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """Timings of live connections (seconds); tests shorten them."""

    heartbeat_s: float = 30.0  # WebSocket ping interval; no pong within half of it closes
    auth_timeout_s: float = 10.0  # time to send the auth frame when no token came with the upgrade
    max_wait_s: float = 300.0  # longest wait between frames (an empty sync response then)
    send_timeout_s: float = 60.0  # a frame not drained by then: the reader is stalled, close
    max_inflight_requests: int = 8  # client requests served at once; reading pauses beyond


class LiveConnection(Protocol):
    user_id: str
    token_hash: str | None

    def revalidate(self) -> None:
        """Check the connection's token again now (it may have been revoked)."""

    async def shutdown(self) -> None:
        """Close because the server is stopping."""


class LiveConnections:
    """The open live-sync connections of this process, by user and by token."""

    def __init__(self, settings: LiveSettings | None = None) -> None:
        self.settings = settings or LiveSettings()
        self._by_user: dict[str, set[LiveConnection]] = {}
        self._by_token: dict[str, set[LiveConnection]] = {}
        self.closing = False
        sync_metrics.websocket_connections.bind(self, lambda live: live.count)

    def add(self, conn: LiveConnection) -> None:
        self._by_user.setdefault(conn.user_id, set()).add(conn)
        if conn.token_hash is not None:
            self._by_token.setdefault(conn.token_hash, set()).add(conn)

    def remove(self, conn: LiveConnection) -> None:
        for index, key in ((self._by_user, conn.user_id), (self._by_token, conn.token_hash)):
            if key is None:
                continue
            conns = index.get(key)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del index[key]

    def tokens_invalidated(self, token_hashes: list[str]) -> None:
        for digest in token_hashes:
            for conn in list(self._by_token.get(digest, ())):
                conn.revalidate()

    def user_invalidated(self, user_id: str) -> None:
        for conn in list(self._by_user.get(user_id, ())):
            conn.revalidate()

    async def shutdown_all(self) -> None:
        self.closing = True
        conns = [conn for group in self._by_user.values() for conn in group]
        if conns:
            await asyncio.gather(*(conn.shutdown() for conn in conns), return_exceptions=True)

    @property
    def count(self) -> int:
        return sum(len(c) for c in self._by_user.values())


def new_connection_id() -> str:
    return f"ws{next(_connection_ids)}"


class SyncPushStream:
    """Successive sync responses for one connection, each from the previous one's `next_batch`.

    `template` is the SyncRequest the connection's query parameters describe (filter,
    set_presence, since, full_state). Lazy-loaded members are tracked under a key of this
    connection: a frame is only known to have arrived once the connection outlives it, so a client
    that reconnects (from whatever token it last processed) is sent the member events it needs
    again instead of trusting what an earlier connection may have lost.
    """

    def __init__(
        self,
        sync: SyncService,
        template: SyncRequest,
        connection_id: str,
        max_wait_s: float,
    ) -> None:
        self.sync = sync
        self.template = replace(template, filter_key=f"{template.filter_key}\x00{connection_id}")
        self.since: StreamToken | None = template.since
        self.full_state = template.full_state
        self.max_wait_ms = int(max_wait_s * 1000)

    @property
    def stopped(self) -> bool:
        return self.sync.notifier.closed

    async def next(self) -> dict[str, Any] | None:
        """The next response: at once if anything is new since the last one, else when something
        is, else an empty one after `max_wait_s`. None once the server is shutting down."""
        if self.stopped:
            return None
        req = replace(
            self.template,
            since=self.since,
            full_state=self.full_state,
            timeout_ms=self.max_wait_ms if self.since is not None else 0,
            extras={},
            lazy_members=None,
        )
        response = await self.sync.sync(req)
        if self.stopped and req.since is not None and not _has_news(response):
            return None  # the notifier answered the long-poll because it closed
        self.since = StreamToken.parse(response["next_batch"])
        self.full_state = False
        return response

    def close(self) -> None:
        """The connection ended: drop its lazy-member bookkeeping."""
        template = self.template
        self.sync.lazy_members.forget(template.user_id, template.device_id, template.filter_key)


def _has_news(response: dict[str, Any]) -> bool:
    rooms = response.get("rooms") or {}
    return any(rooms.get(k) for k in ("join", "invite", "leave", "knock")) or bool(
        (response.get("account_data") or {}).get("events")
        or (response.get("presence") or {}).get("events")
        or (response.get("to_device") or {}).get("events")
        or (response.get("device_lists") or {}).get("changed")
        or (response.get("device_lists") or {}).get("left")
    )
