"""Typing notifications (client-server API "Typing Notifications"): in memory only.

Per room: who is typing until when (event-loop time), and at most one timer (`loop.call_at` at the
room's earliest deadline) that expires typists, so nothing polls. Each change of a room's typing set
takes the next position of the `typing` stream and wakes the room's members; /sync sends the whole
current set as the room's `m.typing` ephemeral event when it changed after the token.

The stream is not persisted. It starts at the wall-clock time in milliseconds, so positions keep
growing across restarts (a client's old token stays behind the new positions instead of hiding the
next changes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.core.errors import forbidden
from homeserver.core.streams import EventsRow, Stream, StreamRow, TypingRow
from homeserver.events import constants as c
from homeserver.replication.bus import StreamBus
from homeserver.services.changelog import ChangeLog
from homeserver.state.current import CurrentStateCache

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000
# A remote user's typing lasts this long unless their server renews it (Synapse's value).
FEDERATION_TIMEOUT_MS = 60_000

ActivityHook = Callable[[str, str | None], Awaitable[None]]


class TypingService:
    def __init__(self, state: CurrentStateCache, bus: StreamBus, start_position: int) -> None:
        self.state = state
        self.bus = bus
        self.position = start_position
        self.log: ChangeLog[str] = ChangeLog(start_position)
        self.activity_hooks: list[ActivityHook] = []
        # room_id -> user_id -> deadline (event-loop time, seconds)
        self._typing: dict[str, dict[str, float]] = {}
        # room_id -> position of the room's latest typing change
        self._serial: dict[str, int] = {}
        # room_id -> (when, handle) of the room's one expiry timer
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}

    # -- client API ------------------------------------------------------------------------------

    async def set_typing(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        target: str,
        typing: bool,
        timeout_ms: int | None,
    ) -> None:
        """PUT /rooms/{roomId}/typing/{userId}."""
        if target != user_id:
            raise forbidden("Cannot set another user's typing state")
        snapshot = await self.state.get(room_id)
        if snapshot is None or snapshot.membership(user_id) != c.JOIN:
            raise forbidden(f"User {user_id} not in room {room_id}")
        for hook in self.activity_hooks:
            try:
                await hook(user_id, device_id)
            except Exception:
                logger.exception("typing activity hook failed")
        if typing:
            timeout = DEFAULT_TIMEOUT_MS if timeout_ms is None else timeout_ms
            self.started(room_id, user_id, max(0, min(timeout, MAX_TIMEOUT_MS)))
        else:
            self.stopped(room_id, user_id)

    async def receive_remote(self, room_id: str, user_id: str, typing: bool) -> bool:
        """An m.typing EDU (its origin, ACL and the user's server checked by the caller): applied
        when the user is joined to the room; it expires like local typing, after
        FEDERATION_TIMEOUT_MS unless renewed (as Synapse). False when ignored."""
        snapshot = await self.state.get(room_id)
        if snapshot is None or snapshot.membership(user_id) != c.JOIN:
            return False
        if typing:
            self.started(room_id, user_id, FEDERATION_TIMEOUT_MS)
        else:
            self.stopped(room_id, user_id)
        return True

    def started(self, room_id: str, user_id: str, timeout_ms: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        users = self._typing.setdefault(room_id, {})
        was_typing = user_id in users
        users[user_id] = deadline
        self._arm(room_id, deadline)
        if not was_typing:
            self._changed(room_id)

    def stopped(self, room_id: str, user_id: str) -> None:
        users = self._typing.get(room_id)
        if not users or user_id not in users:
            return
        del users[user_id]
        if not users:
            self._drop_room(room_id)
        self._changed(room_id)

    def _changed(self, room_id: str) -> None:
        self.position += 1
        self._serial[room_id] = self.position
        self.log.add(self.position, room_id)
        row = TypingRow(self.position, room_id, tuple(self.typing_users(room_id)))
        self.bus.publish(Stream.TYPING, self.position, [row])

    # -- expiry ----------------------------------------------------------------------------------

    def _arm(self, room_id: str, deadline: float) -> None:
        current = self._timers.get(room_id)
        if current is not None:
            if current[0] <= deadline:
                return  # fires earlier; it re-arms for the rest
            current[1].cancel()
        loop = asyncio.get_running_loop()
        self._timers[room_id] = (deadline, loop.call_at(deadline, self._expire, room_id))

    def _expire(self, room_id: str) -> None:
        self._timers.pop(room_id, None)
        users = self._typing.get(room_id)
        if not users:
            return
        now = asyncio.get_running_loop().time()
        expired = [u for u, deadline in users.items() if deadline <= now]
        for user_id in expired:
            del users[user_id]
        if users:
            self._arm(room_id, min(users.values()))
        else:
            self._drop_room(room_id)
        if expired:
            self._changed(room_id)

    def _drop_room(self, room_id: str) -> None:
        self._typing.pop(room_id, None)
        timer = self._timers.pop(room_id, None)
        if timer is not None:
            timer[1].cancel()

    def stop(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # -- replication (docs/scale-out.md) ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Main's typing state for a worker that starts or missed announcements."""
        return {"position": self.position, "rooms": {r: self.typing_users(r) for r in self._typing}}

    def load_snapshot(self, position: int, rooms: dict[str, list[str]]) -> set[str]:
        """A worker takes main's state (typing lives only in main's memory): at start, and after
        missing announcements (rooms that differ count as changed at `position`)."""
        changed = {
            r for r in set(self._typing) | set(rooms) if self.typing_users(r) != sorted(rooms.get(r, ()))
        }
        self._typing = {r: dict.fromkeys(users, float("inf")) for r, users in rooms.items() if users}
        if position > self.position:
            for room_id in changed:
                self._serial[room_id] = position
                self.log.add(position, room_id)
            self.position = position
        return changed

    def apply_replicated(self, row: TypingRow) -> None:
        """Main's announcement on a worker: who types now (main expires them, not us)."""
        if row.user_ids:
            self._typing[row.room_id] = {u: float("inf") for u in row.user_ids}
        else:
            self._typing.pop(row.room_id, None)
        self.position = max(self.position, row.position)
        self._serial[row.room_id] = row.position
        self.log.add(row.position, row.room_id)

    # -- membership ------------------------------------------------------------------------------

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Events stream consumer: a user who is no longer joined stops typing."""
        for row in rows:
            if not isinstance(row, EventsRow) or not row.is_live or row.state_key is None:
                continue
            if row.membership is not None and row.membership != c.JOIN:
                self.stopped(row.room_id, row.state_key)

    # -- /sync -----------------------------------------------------------------------------------

    def typing_users(self, room_id: str) -> list[str]:
        return sorted(self._typing.get(room_id, ()))

    def rooms_changed(self, after: int, joined: set[str]) -> set[str]:
        if after >= self.position:
            return set()
        changed = self.log.changed(after, joined)
        if changed is None:  # token from before this process started: send every known room
            return {r for r in self._serial if r in joined}
        return changed

    def room_event(self, room_id: str, after: int | None) -> dict[str, Any] | None:
        """The room's `m.typing` event: when it changed after `after`, or (None) when anyone types."""
        if after is None:
            if not self._typing.get(room_id):
                return None
        elif self._serial.get(room_id, 0) <= after:
            return None
        return {"type": "m.typing", "content": {"user_ids": self.typing_users(room_id)}}
