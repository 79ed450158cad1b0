"""Presence (client-server API "Presence").

Each device of a local user has a state: a /sync marks it `online` (or `unavailable`, per
`set_presence`; `offline` leaves presence alone), `PUT /presence` sets it explicitly, and activity
(sending, receipts, typing) bumps its last-active time and brings an idle device back online. The
user's state is the "highest" of their devices' (online > unavailable > offline).

Timeouts, checked by one event-loop timer at the earliest deadline of all users (a heap):
- an online device with no activity for `idle_timeout_ms` (5 min) becomes `unavailable`;
- a device with no sync in progress and no sync or activity for `sync_online_timeout_ms` (30 s)
  goes away, so the user goes `offline` 30 s after their last sync ended;
- `currently_active` is true while online and active within `last_active_granularity_ms` (1 min).

A change worth telling (state, status message, currently_active, or a last-active jump while not
currently active) takes the next `presence` stream position and wakes the user and everyone who
shares a joined room with them; /sync sends those users' current presence. The aggregated state is
written behind to the `presence` table (batched), devices live in memory only.

With presence disabled (`presence.enabled: false`) nothing is tracked: GET answers `offline`, PUT is
accepted and ignored, and /sync carries no presence (as Synapse).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import astuple, dataclass, replace
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import DatabaseUnavailableError, MatrixError, forbidden
from homeserver.core.streams import EventsRow, PresenceStreamRow, Stream, StreamRow
from homeserver.events import constants as c
from homeserver.http.ratelimit import Bucket, RateLimiter
from homeserver.metrics.usage import background_process
from homeserver.notifier.notifier import Notifier
from homeserver.replication.bus import StreamBus
from homeserver.services import metrics
from homeserver.services.changelog import ChangeLog
from homeserver.state.current import CurrentStateCache
from homeserver.state.indexes import MembershipIndex
from homeserver.storage.stores.presence import PresenceRow, PresenceStore

logger = logging.getLogger(__name__)

ONLINE = "online"
UNAVAILABLE = "unavailable"
OFFLINE = "offline"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)
_PRIORITY = {OFFLINE: 0, UNAVAILABLE: 1, ONLINE: 2}

IDLE_TIMEOUT_MS = 5 * 60 * 1000
SYNC_ONLINE_TIMEOUT_MS = 30 * 1000
LAST_ACTIVE_GRANULARITY_MS = 60 * 1000
# A remote user whose server sent nothing about them for this long is offline (Synapse's value).
FEDERATION_TIMEOUT_MS = 30 * 60 * 1000

_KEEP: Any = object()


@dataclass(slots=True)
class _Device:
    state: str
    last_active_ts: int
    last_sync_ts: int
    syncing: int = 0
    # unavailable because of the idle timeout (not set by the client): a sync asking for
    # `online` does not undo it, activity does
    auto_idle: bool = False


def format_presence(row: PresenceRow, now: int) -> dict[str, Any]:
    """The client form (GET /presence/{userId}/status and the m.presence event content)."""
    content: dict[str, Any] = {"presence": row.state}
    if row.last_active_ts:
        content["last_active_ago"] = max(0, now - row.last_active_ts)
    if row.status_msg:
        content["status_msg"] = row.status_msg
    if row.state == ONLINE:
        content["currently_active"] = row.currently_active
    return content


class PresenceService:
    FLUSH_DELAY_S = 1.0

    def __init__(
        self,
        store: PresenceStore,
        memberships: MembershipIndex,
        state: CurrentStateCache,
        notifier: Notifier,
        clock: Clock,
        ratelimiter: RateLimiter,
        rc_presence: Bucket,
        *,
        enabled: bool,
        start_position: int,
        bus: StreamBus,
        idle_timeout_ms: int = IDLE_TIMEOUT_MS,
        sync_online_timeout_ms: int = SYNC_ONLINE_TIMEOUT_MS,
        last_active_granularity_ms: int = LAST_ACTIVE_GRANULARITY_MS,
        federation_timeout_ms: int = FEDERATION_TIMEOUT_MS,
    ) -> None:
        self.store = store
        self.memberships = memberships
        self.state = state
        self.notifier = notifier
        self.bus = bus
        self.clock = clock
        self.ratelimiter = ratelimiter
        self.rc_presence = rc_presence
        self.enabled = enabled
        self.position = start_position
        self.idle_timeout_ms = idle_timeout_ms
        self.sync_online_timeout_ms = sync_online_timeout_ms
        self.last_active_granularity_ms = last_active_granularity_ms
        self.federation_timeout_ms = federation_timeout_ms
        self.log: ChangeLog[str] = ChangeLog(start_position)
        self._states: dict[str, PresenceRow] = {}
        self._devices: dict[str, dict[str | None, _Device]] = {}
        self._not_offline: set[str] = set()
        # remote users (from m.presence EDUs, kept in memory only) -> when their server last told us
        self._remote_seen: dict[str, int] = {}
        # timeouts: heap of (deadline ms, user) and each user's live deadline (others are stale)
        self._heap: list[tuple[int, str]] = []
        self._deadline: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        # write-behind
        self._dirty: dict[str, PresenceRow] = {}
        self._flush_wanted = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.enabled:
            return
        now = self.clock.time_ms()
        for row in await self.store.list_not_offline():
            self._states[row.user_id] = row
            self._not_offline.add(row.user_id)
            # No sync is running after a restart: without one the user goes offline after the grace.
            self._devices[row.user_id] = {None: _Device(row.state, row.last_active_ts, now)}
            self._schedule(row.user_id)
        self._flusher = asyncio.create_task(self._flush_loop(), name="presence-flush")

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None
        await self._flush()

    # -- replication (docs/scale-out.md): a worker mirrors main, never decides ---------------------

    async def start_replica(self) -> None:
        """A worker's start: who is not offline now (no timers, no writes: main owns presence)."""
        if not self.enabled:
            return
        for row in await self.store.list_not_offline():
            self._states[row.user_id] = row
            self._not_offline.add(row.user_id)

    def snapshot_rows(self, user_ids: Iterable[str]) -> dict[str, list[Any]]:
        """The full state of changed users, sent with the stream rows (the database only has it
        after the write-behind flush)."""
        out: dict[str, list[Any]] = {}
        for user_id in user_ids:
            row = self._states.get(user_id)
            if row is not None:
                out[user_id] = list(astuple(row))
        return out

    async def apply_replicated(
        self, position: int, user_ids: Iterable[str], rows: dict[str, list[Any]]
    ) -> None:
        """Main's announcement on a worker: take the states, then wake the local syncs."""
        users = list(user_ids)
        for user_id in users:
            values = rows.get(user_id)
            if values is None:  # caught up from the database: reload what it has
                self._states.pop(user_id, None)
                await self._load([user_id])
                row = self._states[user_id]
            else:
                row = PresenceRow(*values)
                self._states[user_id] = row
            if row.state == OFFLINE:
                self._not_offline.discard(user_id)
            else:
                self._not_offline.add(user_id)
            self.log.add(position, user_id)
        self.position = max(self.position, position)
        for user_id in users:
            await self._notify(user_id, position)

    # -- loading ---------------------------------------------------------------------------------

    def _default(self, user_id: str) -> PresenceRow:
        return PresenceRow(user_id, OFFLINE, None, 0, 0, False, 0)

    async def _load(self, user_ids: Iterable[str]) -> None:
        missing = [u for u in user_ids if u not in self._states]
        if not missing:
            return
        found = await self.store.get_many(missing)
        for user_id in missing:
            if user_id not in self._states:  # not changed while loading
                self._states[user_id] = found.get(user_id) or self._default(user_id)

    async def get_state(self, user_id: str) -> PresenceRow:
        row = self._states.get(user_id)
        if row is None:
            await self._load([user_id])
            row = self._states[user_id]
        return row

    # -- client API ------------------------------------------------------------------------------

    async def get_presence(self, requester: str, target: str) -> dict[str, Any]:
        """GET /presence/{userId}/status."""
        if not self.enabled:
            return {"presence": OFFLINE}
        if requester != target and not await self.shares_room(requester, target):
            raise forbidden("You are not allowed to see their presence.")
        return format_presence(await self.get_state(target), self.clock.time_ms())

    async def set_presence(
        self, requester: str, device_id: str | None, target: str, presence: str, status_msg: str | None
    ) -> None:
        """PUT /presence/{userId}/status."""
        if requester != target:
            raise forbidden("Can only set your own presence state")
        if presence not in STATES:
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid presence state {presence!r}")
        self.ratelimiter.check("presence", requester, self.rc_presence)
        if not self.enabled:
            return
        await self.get_state(requester)
        now = self.clock.time_ms()
        device = self._device(requester, device_id, now)
        device.state = presence
        device.auto_idle = False
        device.last_active_ts = now
        self._update(requester, now, bump=presence == ONLINE, status_msg=status_msg)

    # -- activity and syncs ----------------------------------------------------------------------

    async def bump_active(self, user_id: str, device_id: str | None) -> None:
        """The user did something (sent an event, a receipt, typed): last active is now, and an
        idle device is online again."""
        if not self.enabled:
            return
        await self.get_state(user_id)
        now = self.clock.time_ms()
        device = self._device(user_id, device_id, now)
        device.last_active_ts = now
        metrics.presence_bump_active_time.inc()
        if device.state == UNAVAILABLE:
            device.state = ONLINE
            device.auto_idle = False
        self._update(user_id, now, bump=True)

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Events stream consumer: events a client sent (through a transaction id) count as activity."""
        if not self.enabled:
            return
        senders = {(r.sender, r.device_id) for r in rows if isinstance(r, EventsRow) and r.txn_id is not None}
        for user_id, device_id in senders:
            self._spawn(self.bump_active(user_id, device_id))

    async def sync_started(self, user_id: str, device_id: str | None, set_presence: str | None) -> None:
        """A /sync began (SyncService hook). `set_presence` defaults to online; offline: no effect."""
        presence = set_presence or ONLINE
        if not self.enabled or presence == OFFLINE:
            return
        await self.get_state(user_id)
        now = self.clock.time_ms()
        device = self._device(user_id, device_id, now)
        device.syncing += 1
        device.last_sync_ts = now
        bump = False
        if presence == UNAVAILABLE:
            device.state = UNAVAILABLE
            device.auto_idle = False
        elif device.state != ONLINE and not (device.state == UNAVAILABLE and device.auto_idle):
            device.state = ONLINE
            device.last_active_ts = now
            bump = True
        self._update(user_id, now, bump=bump, last_sync=True)

    def sync_finished(self, user_id: str, device_id: str | None, set_presence: str | None) -> None:
        if not self.enabled or (set_presence or ONLINE) == OFFLINE:
            return
        device = self._devices.get(user_id, {}).get(device_id)
        if device is None:
            return
        device.syncing = max(0, device.syncing - 1)
        now = self.clock.time_ms()
        device.last_sync_ts = now
        if user_id in self._states:
            self._update(user_id, now, last_sync=True)

    async def receive_remote(
        self,
        user_id: str,
        presence: str,
        status_msg: str | None,
        last_active_ago: int,
        currently_active: bool,
    ) -> None:
        """One entry of an m.presence EDU's `push` (the caller checked the user belongs to the
        sending server and shares a room with a local user). Remote presence lives in memory and
        tells local users like a local change; it turns offline after FEDERATION_TIMEOUT_MS
        without news."""
        if not self.enabled or presence not in STATES:
            return
        prev = await self.get_state(user_id)
        now = self.clock.time_ms()
        self._remote_seen[user_id] = now
        row = replace(
            prev,
            state=presence,
            status_msg=status_msg,
            last_active_ts=max(0, now - max(0, last_active_ago)),
            last_user_sync_ts=now,
            currently_active=presence == ONLINE and currently_active,
        )
        self._set_remote(user_id, prev, row)

    def _set_remote(self, user_id: str, prev: PresenceRow, row: PresenceRow) -> None:
        row = self._tell_if_worth(user_id, prev, row)
        self._states[user_id] = row
        if row.state == OFFLINE:
            self._not_offline.discard(user_id)
        else:
            self._not_offline.add(user_id)
        self._schedule(user_id)

    def _remote_timeout(self, user_id: str, now: int) -> None:
        row = self._states.get(user_id)
        if row is None or row.state == OFFLINE:
            return
        if now - self._remote_seen.get(user_id, 0) >= self.federation_timeout_ms:
            self._set_remote(user_id, row, replace(row, state=OFFLINE, currently_active=False))
        else:
            self._schedule(user_id)

    def _device(self, user_id: str, device_id: str | None, now: int) -> _Device:
        devices = self._devices.setdefault(user_id, {})
        device = devices.get(device_id)
        if device is None:
            device = devices[device_id] = _Device(OFFLINE, 0, now)
        return device

    # -- state changes ---------------------------------------------------------------------------

    def _update(
        self,
        user_id: str,
        now: int,
        *,
        bump: bool = False,
        last_sync: bool = False,
        status_msg: Any = _KEEP,
    ) -> None:
        """Recompute the user's state from their devices; persist, and tell others if it matters."""
        prev = self._states[user_id]
        state = OFFLINE
        best: tuple[int, int] = (-1, -1)
        for device in self._devices.get(user_id, {}).values():
            rank = (_PRIORITY[device.state], device.last_active_ts)
            if rank > best:
                best, state = rank, device.state
        last_active = now if bump else prev.last_active_ts
        row = replace(
            prev,
            state=state,
            status_msg=prev.status_msg if status_msg is _KEEP else status_msg,
            last_active_ts=last_active,
            last_user_sync_ts=now if last_sync else prev.last_user_sync_ts,
            currently_active=state == ONLINE and now - last_active < self.last_active_granularity_ms,
        )
        if prev.state != state:
            metrics.presence_state_transition.labels("local", prev.state, state).inc()
        row = self._tell_if_worth(user_id, prev, row)
        self._states[user_id] = row
        if state == OFFLINE:
            self._not_offline.discard(user_id)
        else:
            self._not_offline.add(user_id)
        if row.stream_id != prev.stream_id or row.last_active_ts != prev.last_active_ts:
            # last_user_sync_ts alone is not worth a write: after a restart nobody is syncing
            self._dirty[user_id] = row
            self._flush_wanted.set()
        self._schedule(user_id)

    def _tell_if_worth(self, user_id: str, prev: PresenceRow, row: PresenceRow) -> PresenceRow:
        """Take the next stream position and wake whoever shares a room, when it matters."""
        if not self._worth_telling(prev, row):
            return row
        metrics.presence_updates.inc()
        self.position += 1
        row = replace(row, stream_id=self.position)
        self.log.add(self.position, user_id)
        self._states[user_id] = row  # before the announcement: replication sends this row
        self.bus.publish(
            Stream.PRESENCE, self.position, [PresenceStreamRow(self.position, user_id, row.state)]
        )
        self._spawn(self._notify(user_id, self.position))
        return row

    def _worth_telling(self, prev: PresenceRow, row: PresenceRow) -> bool:
        if prev.state != row.state or prev.status_msg != row.status_msg:
            return True
        if prev.currently_active != row.currently_active:
            return True
        jumped = row.last_active_ts - prev.last_active_ts > self.last_active_granularity_ms
        return jumped and not (row.state == ONLINE and row.currently_active)

    async def _notify(self, user_id: str, position: int) -> None:
        """Wake the user and every local user sharing a joined room with them."""
        users = {user_id}
        rooms = await self.memberships.load_user(user_id)
        for room_id, (membership, _) in list(rooms.items()):
            if membership == c.JOIN:
                await self.state.get(room_id)
                users.update(self.notifier.room_users(room_id))
        metrics.presence_notified.inc(len(users))
        self.notifier.on_user_event(Stream.PRESENCE, position, users)

    # -- timeouts --------------------------------------------------------------------------------

    def _next_deadline(self, user_id: str) -> int | None:
        seen = self._remote_seen.get(user_id)
        if seen is not None:
            remote = self._states.get(user_id)
            if remote is None or remote.state == OFFLINE:
                return None
            return seen + self.federation_timeout_ms + 1
        deadlines = []
        for device in self._devices.get(user_id, {}).values():
            if device.state == ONLINE:
                deadlines.append(device.last_active_ts + self.idle_timeout_ms)
            if device.syncing == 0:
                seen = max(device.last_sync_ts, device.last_active_ts)
                deadlines.append(seen + self.sync_online_timeout_ms)
        row = self._states.get(user_id)
        if row is not None and row.currently_active:
            deadlines.append(row.last_active_ts + self.last_active_granularity_ms)
        return min(deadlines) + 1 if deadlines else None

    def _schedule(self, user_id: str) -> None:
        deadline = self._next_deadline(user_id)
        if deadline is None:
            self._deadline.pop(user_id, None)
            return
        current = self._deadline.get(user_id)
        if current is not None and current <= deadline:
            return  # that earlier check re-schedules
        self._deadline[user_id] = deadline
        heapq.heappush(self._heap, (deadline, user_id))
        self._arm()

    def _arm(self) -> None:
        if not self._heap:
            return
        first = self._heap[0][0]
        if self._timer is not None and self._timer_at is not None and self._timer_at <= first:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0, first - self.clock.time_ms()) / 1000
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        self._timer_at = first

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.check_timeouts()

    def check_timeouts(self) -> None:
        """Apply every timeout due by now (the timer calls this; tests with a fake clock too)."""
        now = self.clock.time_ms()
        due = []
        while self._heap and self._heap[0][0] <= now:
            deadline, user_id = heapq.heappop(self._heap)
            if self._deadline.get(user_id) == deadline:
                del self._deadline[user_id]
                due.append(user_id)
        for user_id in due:
            self._timeout(user_id, now)
        if self._heap and self._timer is None:
            self._arm()

    def _timeout(self, user_id: str, now: int) -> None:
        if user_id in self._remote_seen:
            self._remote_timeout(user_id, now)
            return
        devices = self._devices.get(user_id, {})
        for device_id, device in list(devices.items()):
            if device.state == ONLINE and now - device.last_active_ts > self.idle_timeout_ms:
                device.state = UNAVAILABLE
                device.auto_idle = True
            seen = max(device.last_sync_ts, device.last_active_ts)
            if device.syncing == 0 and now - seen > self.sync_online_timeout_ms:
                del devices[device_id]
        if not devices:
            self._devices.pop(user_id, None)
        if user_id in self._states:
            self._update(user_id, now)

    # -- write-behind ----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            await asyncio.sleep(self.FLUSH_DELAY_S)  # batch what comes meanwhile
            self._flush_wanted.clear()
            await background_process("persist_presence_changes", self._flush())

    async def _flush(self) -> None:
        if not self._dirty:
            return
        rows, self._dirty = list(self._dirty.values()), {}
        try:
            await self.store.upsert_many(rows)
        except Exception as exc:
            if isinstance(exc, DatabaseUnavailableError):
                logger.warning("writing %d presence rows waits for the database: %s", len(rows), exc)
            else:
                logger.exception("writing %d presence rows failed", len(rows))
            for row in rows:
                self._dirty.setdefault(row.user_id, row)
            # Try again after the delay, not only at the next change: with no new change the
            # rows would stay unwritten after the database came back.
            self._flush_wanted.set()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, DatabaseUnavailableError):
            logger.warning("presence update not delivered: %s", exc)
        elif exc is not None:
            logger.error("presence task failed", exc_info=exc)

    # -- visibility and /sync --------------------------------------------------------------------

    async def shares_room(self, user_a: str, user_b: str) -> bool:
        rooms_a = await self.memberships.load_user(user_a)
        rooms_b = await self.memberships.load_user(user_b)
        if len(rooms_b) < len(rooms_a):
            rooms_a, rooms_b = rooms_b, rooms_a
        for room_id, (membership, _) in rooms_a.items():
            if membership == c.JOIN:
                other = rooms_b.get(room_id)
                if other is not None and other[0] == c.JOIN:
                    return True
        return False

    async def sync_states(
        self, user_id: str, after: int | None, joined: set[str], new_rooms: Iterable[str]
    ) -> list[PresenceRow]:
        """Presence a /sync sends: on an initial sync (after None) every non-offline user sharing
        a joined room and the user themself; otherwise users changed after `after` who share a room
        (or are the user), plus the non-offline members of rooms joined since the token."""
        chosen: dict[str, PresenceRow] = {}
        if after is None:
            candidates = await self._members_of(joined)
            candidates.add(user_id)
            await self._load([user_id])
            for other in candidates:
                row = self._states.get(other)
                if other in self._not_offline and row is not None:
                    chosen[other] = row
            return list(chosen.values())
        if after < self.position:
            changed = self.log.keys_since(after)
            if changed is None:  # token from before this process started
                changed = await self.store.users_changed_since(after)
            await self._load(set(changed))
            joined_set = joined
            for other in set(changed):
                if other == user_id or await self._shares_joined(other, joined_set):
                    chosen[other] = self._states[other]
        new_rooms = list(new_rooms)
        if new_rooms:
            for other in await self._members_of(new_rooms):
                row = self._states.get(other)
                if other in self._not_offline and row is not None:
                    chosen.setdefault(other, row)
        return list(chosen.values())

    async def _members_of(self, room_ids: Iterable[str]) -> set[str]:
        members: set[str] = set()
        for room_id in room_ids:
            snapshot = await self.state.get(room_id)
            if snapshot is not None:
                members.update(u for u, m in snapshot.memberships.items() if m == c.JOIN)
        return members

    async def _shares_joined(self, other: str, joined: set[str]) -> bool:
        rooms = await self.memberships.load_user(other)
        return any(m == c.JOIN and r in joined for r, (m, _) in rooms.items())

    def event(self, row: PresenceRow, now: int) -> dict[str, Any]:
        return {"type": "m.presence", "sender": row.user_id, "content": format_presence(row, now)}
