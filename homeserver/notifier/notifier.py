"""The notifier: parks /sync long-polls per user and wakes only the affected users.

A parked request costs one future and a set entry; nothing polls. Each user has a "last notified
token": a sync that found nothing at token T waits until that user's token moves past T, so a
notification between computing the empty result and parking is never lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence

from homeserver.core.streams import (
    AccountDataRow,
    EventsRow,
    ReceiptRow,
    Stream,
    StreamRow,
    ToDeviceRow,
    TypingRow,
)
from homeserver.core.tokens import StreamToken
from homeserver.notifier.deadlines import EXPIRED, Deadlines
from homeserver.notifier.metrics import notified_events, users_woken_by_stream, wakeup_latency


class _UserStream:
    __slots__ = ("token", "waiters")

    def __init__(self, token: StreamToken) -> None:
        self.token = token
        self.waiters: set[asyncio.Future[float]] = set()


class Notifier:
    def __init__(self) -> None:
        self.current = StreamToken()
        self._users: dict[str, _UserStream] = {}
        # room_id -> local users to wake for it (joined, plus invited/knocking for their own event)
        self.room_users: Callable[[str], Iterable[str]] = lambda room_id: ()
        self.global_listeners: list[Callable[[StreamToken], None]] = []
        self._closed = False
        self._deadlines = Deadlines()

    def advance(self, stream: Stream, position: int) -> StreamToken:
        if position > self.current.get(stream):
            self.current = self.current.with_stream(stream, position)
        return self.current

    def notify_users(self, user_ids: Iterable[str]) -> int:
        """Wake the users' parked syncs; returns how many users had one."""
        token = self.current
        now = time.perf_counter()
        woken = 0
        for user_id in user_ids:
            entry = self._users.get(user_id)
            if entry is None:
                continue
            entry.token = token
            waiters, entry.waiters = entry.waiters, set()
            woken += bool(waiters)
            for fut in waiters:
                if not fut.done():
                    fut.set_result(now)
        for listener in self.global_listeners:
            listener(token)
        return woken

    def on_room_event(
        self, stream: Stream, position: int, room_id: str, extra_users: Iterable[str] = ()
    ) -> None:
        self.advance(stream, position)
        users = set(self.room_users(room_id))
        users.update(extra_users)
        notified_events.inc()
        users_woken_by_stream.labels(stream).inc(self.notify_users(users))

    def on_user_event(self, stream: Stream, position: int, user_ids: Iterable[str]) -> None:
        self.advance(stream, position)
        users_woken_by_stream.labels(stream).inc(self.notify_users(user_ids))

    # -- stream bus consumers (subscribed by the container) ---------------------------------------

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Wake the local members of each room with a new live event (and a member event's
        target: an invitee or knocker is not joined yet), then the stream's position."""
        for row in rows:
            if isinstance(row, EventsRow) and row.is_live:
                extra = [row.state_key] if row.membership is not None and row.state_key else []
                self.on_room_event(Stream.EVENTS, row.stream_ordering, row.room_id, extra)
            elif isinstance(row, EventsRow) and row.out_of_band and row.state_key:
                # a remote invite (or its rejection) in a room none of our users is in
                self.on_user_event(Stream.EVENTS, row.stream_ordering, [row.state_key])
        self.advance(Stream.EVENTS, position)

    def on_account_data(self, position: int, rows: Sequence[StreamRow]) -> None:
        self.on_user_event(
            Stream.ACCOUNT_DATA, position, {r.user_id for r in rows if isinstance(r, AccountDataRow)}
        )

    def on_receipts(self, position: int, rows: Sequence[StreamRow]) -> None:
        self.advance(Stream.RECEIPTS, position)
        for row in rows:
            if isinstance(row, ReceiptRow):
                if row.private:
                    self.notify_users([row.user_id])
                else:
                    self.on_room_event(Stream.RECEIPTS, position, row.room_id)

    def on_to_device(self, position: int, rows: Sequence[StreamRow]) -> None:
        self.on_user_event(
            Stream.TO_DEVICE, position, {r.user_id for r in rows if isinstance(r, ToDeviceRow)}
        )

    def on_presence(self, position: int, rows: Sequence[StreamRow]) -> None:
        # Whom to wake needs a membership lookup: PresenceService wakes them (on_user_event).
        self.advance(Stream.PRESENCE, position)

    def on_device_lists(self, position: int, rows: Sequence[StreamRow]) -> None:
        # As for presence: DeviceListService wakes the users sharing a room.
        self.advance(Stream.DEVICE_LISTS, position)

    def on_typing(self, position: int, rows: Sequence[StreamRow]) -> None:
        self.advance(Stream.TYPING, position)
        for row in rows:
            if isinstance(row, TypingRow):
                self.on_room_event(Stream.TYPING, position, row.room_id)

    def track(self, user_id: str) -> None:
        """Start recording notifications for a user. A sync calls this BEFORE it snapshots the
        current token, so nothing that happens while it computes can be missed."""
        if user_id not in self._users:
            self._users[user_id] = _UserStream(StreamToken())

    def subscribe(self, user_id: str, since: StreamToken) -> asyncio.Future[float] | None:
        """A future resolved when something is notified to `user_id` after `since` (None: that
        already happened). For waiters without a task of their own (WebSocket sync); discard it
        with `unsubscribe` when no longer wanted."""
        entry = self._users.get(user_id)
        if entry is None:
            entry = self._users[user_id] = _UserStream(StreamToken())
        if entry.token.advanced_past(since) or self._closed:
            return None
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        entry.waiters.add(fut)
        return fut

    def unsubscribe(self, user_id: str, fut: asyncio.Future[float]) -> None:
        entry = self._users.get(user_id)
        if entry is not None:
            entry.waiters.discard(fut)

    async def wait_for_change(self, user_id: str, since: StreamToken, timeout_s: float) -> bool:
        """Wait until something was notified to `user_id` after `since`; False on timeout."""
        entry = self._users.get(user_id)
        if entry is None:
            entry = self._users[user_id] = _UserStream(StreamToken())
        if entry.token.advanced_past(since):
            return True
        if timeout_s <= 0 or self._closed:
            return False
        # One future per parked request and a set entry for its timeout (asyncio.wait_for would
        # add a second future, a loop timer and a coroutine frame to each of thousands of polls).
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        entry.waiters.add(fut)
        slot = self._deadlines.add(fut, timeout_s)
        try:
            notified_at = await fut
        finally:
            self._deadlines.discard(slot, fut)
            entry.waiters.discard(fut)
        if notified_at == EXPIRED or self._closed:
            return False
        wakeup_latency.observe(time.perf_counter() - notified_at)
        return True

    def close(self) -> None:
        """Shutdown: answer every parked long-poll now, as if its timeout had ended (the client
        gets what there is and its next token), and park no new ones."""
        self._closed = True
        for entry in self._users.values():
            waiters, entry.waiters = entry.waiters, set()
            for fut in waiters:
                if not fut.done():
                    fut.set_result(time.perf_counter())

    @property
    def closed(self) -> bool:
        """Shutting down: loops over `wait_for_change` (WebSocket sync) must stop."""
        return self._closed

    @property
    def listeners(self) -> int:
        """Parked /sync requests."""
        return sum(len(e.waiters) for e in self._users.values())

    @property
    def tracked_users(self) -> int:
        return len(self._users)

    @property
    def waiting_users(self) -> int:
        return sum(1 for e in self._users.values() if e.waiters)
