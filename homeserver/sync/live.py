"""Sync pushed over a live connection (WebSocket sync, docs/websocket.md), on the /sync machinery.

`SyncPushStream` produces successive `SyncService.sync` responses, each an ordinary incremental
sync from the previous response's token, so filters, lazy members, `set_presence` and every
extension behave exactly as for `GET /sync`. It waits on the notifier with a future and a callback
(no task while idle), and computes the next response only after the previous one was written:
while a slow reader drains, nothing is computed or queued, and whatever happened meanwhile arrives
as ONE delta since the last token sent (with `limited` timelines and `prev_batch`, as /sync gives a
client that polled late). Memory per connection is therefore one response at most, whatever the
backlog.

`LiveConnections` knows the open connections by user, so a logout, a deleted device or a
deactivation elsewhere closes them at once, and shutdown closes them all.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
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
    """The open live-sync connections of this process, by user (a short list each: cheap)."""

    def __init__(self, settings: LiveSettings | None = None) -> None:
        self.settings = settings or LiveSettings()
        self._by_user: dict[str, list[LiveConnection]] = {}
        self.closing = False
        sync_metrics.websocket_connections.bind(self, lambda live: live.count)

    def add(self, conn: LiveConnection) -> None:
        self._by_user.setdefault(conn.user_id, []).append(conn)

    def remove(self, conn: LiveConnection) -> None:
        conns = self._by_user.get(conn.user_id)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._by_user[conn.user_id]

    def connections_of(self, user_id: str) -> list[LiveConnection]:
        return list(self._by_user.get(user_id, ()))

    def tokens_invalidated(self, token_hashes: list[str]) -> None:
        # Revocations are rare and name no user: one pass over the open connections.
        revoked = set(token_hashes)
        for conns in list(self._by_user.values()):
            for conn in list(conns):
                if conn.token_hash in revoked:
                    conn.revalidate()

    def user_invalidated(self, user_id: str) -> None:
        for conn in self.connections_of(user_id):
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
    set_presence, since, full_state). An idle connection holds no task: a notifier future (with a
    callback) and one timer. When the user's token moves, a task computes an ordinary
    `SyncService.sync` from the last token (no long-poll inside), hands the response to `deliver`
    (which returns once it is written: back-pressure), and subscribes again from the response's
    token. A wake-up with nothing for this filter sends nothing; the timer sends an empty response
    after `max_wait_s` (fresh `next_batch`, key counts).

    Lazy-loaded members are tracked under a key of this connection: a frame is only known to have
    arrived once the connection outlives it, so a client that reconnects (from whatever token it
    last processed) is sent the member events it needs again instead of trusting what an earlier
    connection may have lost.
    """

    __slots__ = (
        "_fut",
        "_task",
        "_timer",
        "closed",
        "deliver",
        "failed",
        "full_state",
        "max_wait_s",
        "since",
        "sync",
        "template",
    )

    def __init__(
        self,
        sync: SyncService,
        template: SyncRequest,
        connection_id: str,
        max_wait_s: float,
        deliver: Callable[[dict[str, Any]], Awaitable[bool]],
        failed: Callable[[BaseException | None], None],
    ) -> None:
        self.sync = sync
        self.template = replace(
            template, filter_key=f"{template.filter_key}\x00{connection_id}", timeout_ms=0
        )
        self.since: StreamToken | None = template.since
        self.full_state = template.full_state
        self.max_wait_s = max_wait_s
        self.deliver = deliver  # False: not written in time, the connection is closing
        self.failed = failed  # the stream stopped: None on shutdown, else the error
        self.closed = False
        self._fut: asyncio.Future[float] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """The connection counts as syncing (presence) until `close`; the first response now."""
        for hook in self.sync.started_hooks:
            await hook(self.template)
        self._kick(send_empty=True)

    def _kick(self, send_empty: bool = False) -> None:
        if self.closed or self._task is not None:
            return
        self._disarm()
        self._task = asyncio.ensure_future(self._step(send_empty))

    async def _step(self, send_empty: bool) -> None:
        try:
            notifier = self.sync.notifier
            if notifier.closed:
                self._stop(None)
                return
            req = replace(
                self.template, since=self.since, full_state=self.full_state, extras={}, lazy_members=None
            )
            response = await self.sync.sync(req)
            if notifier.closed and req.empty:
                self._stop(None)
                return
            if not req.empty or send_empty or self.since is None:
                if not await self.deliver(response):
                    self._stop(None)
                    return
            # An empty response moves the token past changes that were not for this filter, so
            # they do not wake the stream again; the client's own token stays equally valid.
            self.since = StreamToken.parse(response["next_batch"])
            self.full_state = False
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._stop(exc)
            return
        finally:
            self._task = None
        self._arm()

    def _arm(self) -> None:
        if self.closed:
            return
        assert self.since is not None
        fut = self.sync.notifier.subscribe(self.template.user_id, self.since)
        if fut is None:
            self._kick()
            return
        self._fut = fut
        fut.add_done_callback(self._woken)
        self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._kick, True)

    def _woken(self, fut: asyncio.Future[float]) -> None:
        if fut is self._fut:
            self._fut = None
            self._kick()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fut is not None:
            fut, self._fut = self._fut, None
            self.sync.notifier.unsubscribe(self.template.user_id, fut)
            fut.cancel()

    def _stop(self, error: BaseException | None) -> None:
        if not self.closed:
            self.close()
            self.failed(error)

    def close(self) -> None:
        """The connection ended: stop, no longer count as syncing, forget the lazy members."""
        if self.closed:
            return
        self.closed = True
        self._disarm()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        template = self.template
        for done in self.sync.finished_hooks:
            done(template)
        self.sync.lazy_members.forget(template.user_id, template.device_id, template.filter_key)
