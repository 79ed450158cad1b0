"""The device-list stream: who must re-query whose keys.

A change (new or deleted device, new device keys, new cross-signing keys or signatures) is one row
in `device_lists_stream`, written in the same transaction as the change itself, at a position of
the `device_lists` stream. Users sharing a room with the changed user are woken through the notifier;
their next incremental /sync (or GET /keys/changes) lists the user in `device_lists.changed`.

Membership changes count as well (spec "Tracking the device list for a user"): when a user starts
sharing a room with the viewer they appear in `changed`, when they stop sharing any room in `left`.
Those are derived from the membership deltas of the viewer's rooms between the two tokens, so they
need no rows of their own and arrive with the member events that cause them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from homeserver.core.clock import Clock
from homeserver.core.streams import DeviceListsRow, EventsRow, Stream, StreamRow
from homeserver.core.tokens import StreamToken
from homeserver.events import constants as c
from homeserver.notifier.notifier import Notifier
from homeserver.replication.bus import StreamBus
from homeserver.state.current import CurrentStateCache
from homeserver.state.indexes import MembershipIndex
from homeserver.storage.database import Connection, Database
from homeserver.storage.stores.e2e import E2eStore
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.streams import StreamIdGenerator

# (changed user, visible_to): visible_to None means every user sharing a room with the changed user.
Change = tuple[str, str | None]


@dataclass
class PendingChange:
    """What a caller writes inside `DeviceListService.changing`; `record = False` drops the row
    (the caller found that nothing actually changed)."""

    conn: Connection
    changes: list[Change]
    record: bool = True
    # The (user_id, device_id)s this change is about (new keys, deletion, new signatures), so
    # the federation sender can announce each device (m.device_list_update); none for changes of
    # cross-signing keys only.
    devices: list[tuple[str, str]] = field(default_factory=list)


class DeviceListService:
    def __init__(
        self,
        db: Database,
        store: E2eStore,
        stream: StreamIdGenerator,
        notifier: Notifier,
        memberships: MembershipIndex,
        state: CurrentStateCache,
        rooms: RoomStore,
        clock: Clock,
        *,
        server_name: str,
        events_position: int = 0,
        bus: StreamBus,
    ) -> None:
        self.db = db
        self.store = store
        self.stream = stream
        self.notifier = notifier
        self.bus = bus
        self.memberships = memberships
        self.state = state
        self.rooms = rooms
        self.clock = clock
        self.local_suffix = ":" + server_name
        # room_id -> stream ordering of its latest member event, from the events stream (on_events);
        # complete only for changes after `_member_index_from` (the events position at start).
        self._member_changed: dict[str, int] = {}
        self._member_index_from = events_position

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Events stream consumer: remember which rooms' members changed, and when."""
        for row in rows:
            if isinstance(row, EventsRow) and row.membership is not None and row.is_live:
                self._member_changed[row.room_id] = row.stream_ordering

    def _members_may_have_changed(self, room_id: str, after: int) -> bool:
        return after < self._member_index_from or self._member_changed.get(room_id, 0) > after

    # -- writing ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def changing(self, changes: list[Change]) -> AsyncIterator[PendingChange]:
        """A transaction for a change to devices or keys that also records it in the stream, then
        wakes whoever must hear of it."""
        pending = PendingChange(conn=None, changes=list(changes))  # type: ignore[arg-type]
        async with self.stream.next() as stream_id:
            async with self.db.transaction() as conn:
                pending.conn = conn
                yield pending
                if pending.record and pending.changes:
                    await self.store.insert_device_list_changes_txn(
                        conn, stream_id, pending.changes, self.clock.time_ms()
                    )
                    if pending.devices:
                        await self.store.insert_changed_devices_txn(conn, stream_id, pending.devices)
        if pending.record and pending.changes:
            await self._wake(stream_id, pending.changes)

    async def record(self, changes: list[Change]) -> None:
        """A change with nothing else to write (e.g. a new device without keys yet)."""
        async with self.changing(changes):
            pass

    async def _wake(self, stream_id: int, changes: Iterable[Change]) -> None:
        changes = list(changes)
        users: set[str] = set()
        for user_id, visible_to in changes:
            if visible_to is not None:
                users.add(visible_to)
            else:
                users.add(user_id)
                users |= await self.local_users_sharing_rooms(user_id)
        rows = [DeviceListsRow(stream_id, user_id, visible_to) for user_id, visible_to in changes]

        def publish() -> None:
            position = self.stream.current
            self.bus.publish(Stream.DEVICE_LISTS, position, rows)
            self.notifier.on_user_event(Stream.DEVICE_LISTS, position, users)

        # Only once `stream_id` is visible: with an earlier change still in flight (a concurrent
        # /keys/upload, say), waking now would hand the syncs a token without this change and
        # nobody would wake them again (e.g. a client's own device not yet shown as signed by
        # its self-signing key after bootstrapping cross-signing).
        self.stream.when_visible(stream_id, publish)

    async def local_users_sharing_rooms(self, user_id: str) -> set[str]:
        users: set[str] = set()
        rooms = await self.memberships.load_user(user_id)
        for room_id, (membership, _) in list(rooms.items()):
            if membership != c.JOIN:
                continue
            snapshot = await self.state.get(room_id)
            if snapshot is None:
                continue
            users.update(
                u for u, m in snapshot.memberships.items() if m == c.JOIN and u.endswith(self.local_suffix)
            )
        return users

    # -- reading ---------------------------------------------------------------------------------

    async def shares_room(self, user_id: str, other: str) -> bool:
        mine = await self.memberships.load_user(user_id)
        theirs = await self.memberships.load_user(other)
        small, big = (mine, theirs) if len(mine) <= len(theirs) else (theirs, mine)
        for room_id, (membership, _) in list(small.items()):
            if membership == c.JOIN:
                entry = big.get(room_id)
                if entry is not None and entry[0] == c.JOIN:
                    return True
        return False

    async def changes_between(
        self, user_id: str, since: StreamToken, upto: StreamToken
    ) -> tuple[set[str], set[str]]:
        """(changed, left) for `user_id` between two sync tokens."""
        changed: set[str] = set()
        maybe_left: set[str] = set()
        if upto.device_lists > since.device_lists:
            for change in await self.store.device_list_changes_between(since.device_lists, upto.device_lists):
                if change.visible_to is not None:
                    if change.visible_to == user_id:
                        changed.add(change.user_id)
                elif change.user_id in changed:
                    continue
                elif change.user_id == user_id or await self.shares_room(user_id, change.user_id):
                    changed.add(change.user_id)

        e0, e1 = since.events, upto.events
        if e1 > e0:
            my_rooms = await self.memberships.load_user(user_id)
            for room_id, (membership, pos) in list(my_rooms.items()):
                if e0 < pos <= e1:
                    # The user's own membership changed: everyone in the room is new or gone.
                    if membership not in (c.JOIN, c.LEAVE, c.BAN):
                        continue
                    snapshot = await self.state.get(room_id)
                    if snapshot is None:
                        continue
                    members = set(snapshot.members_with(c.JOIN))
                    members.discard(user_id)
                    (changed if membership == c.JOIN else maybe_left).update(members)
                    continue
                if membership != c.JOIN or not self._members_may_have_changed(room_id, e0):
                    continue
                deltas = await self.rooms.state_deltas_between(room_id, e0, e1)
                others = {d.state_key for d in deltas if d.type == c.MEMBER and d.state_key != user_id}
                if not others:
                    continue
                snapshot = await self.state.get(room_id)
                if snapshot is None:
                    continue
                for other in others:
                    if snapshot.membership(other) == c.JOIN:
                        changed.add(other)
                    else:
                        maybe_left.add(other)
        left = set()
        for other in maybe_left - changed:
            if not await self.shares_room(user_id, other):
                left.add(other)
        return changed - left, left
