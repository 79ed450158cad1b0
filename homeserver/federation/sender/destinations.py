"""Which servers an event goes to, and which servers share a room with a user.

As Synapse: the servers with a member joined in the state *before* the event (so the last member
of a server who is kicked or banned still hears of it), plus the server of the target of a
membership event that removes someone (leave, kick, ban, a rescinded invite). Never ourselves;
only servers in `federation_domain_whitelist` (when set) that the room's server ACL allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from homeserver.core.ids import is_valid_server_name, server_of
from homeserver.core.streams import EventsRow
from homeserver.events import constants as c
from homeserver.federation.acl import server_allowed
from homeserver.state.current import RoomSnapshot
from homeserver.state.indexes import MembershipIndex
from homeserver.state.service import StateService
from homeserver.storage.stores.events import EventStore

REMOVALS = frozenset({c.LEAVE, c.BAN})
SERVER_ACL = "m.room.server_acl"
MAX_CACHED_ROOMS = 10_000


class DestinationResolver:
    def __init__(
        self,
        state: StateService,
        events: EventStore,
        memberships: MembershipIndex,
        *,
        server_name: str,
        domain_whitelist: Iterable[str] | None,
    ) -> None:
        self.state = state
        self.events = events
        self.memberships = memberships
        self.server_name = server_name
        self.suffix = ":" + server_name
        self.whitelist = frozenset(domain_whitelist) if domain_whitelist is not None else None
        # room_id -> (snapshot, joined hosts, any remote member ever): snapshots are immutable
        # and replaced on every state change, so the answer holds while the object is the same
        # (most events of a busy room then cost no scan of its members).
        self._by_snapshot: dict[str, tuple[RoomSnapshot, frozenset[str], bool]] = {}

    def allowed(self, destination: str, acl: Mapping[str, Any] | None = None) -> bool:
        if destination == self.server_name or not is_valid_server_name(destination):
            return False
        if self.whitelist is not None and destination not in self.whitelist:
            return False
        return server_allowed(destination, acl)

    def _filter(self, hosts: Iterable[str], snapshot: RoomSnapshot) -> set[str]:
        acl_event = snapshot.get(SERVER_ACL)
        acl = acl_event.content if acl_event is not None else None
        return {h for h in hosts if self.allowed(h, acl)}

    def _summary(self, snapshot: RoomSnapshot) -> tuple[frozenset[str], bool]:
        cached = self._by_snapshot.get(snapshot.room_id)
        if cached is not None and cached[0] is snapshot:
            return cached[1], cached[2]
        hosts = frozenset(joined_hosts(snapshot.memberships))
        remote = any(not u.endswith(self.suffix) for u in snapshot.memberships)
        if len(self._by_snapshot) >= MAX_CACHED_ROOMS:
            self._by_snapshot.pop(next(iter(self._by_snapshot)))
        self._by_snapshot[snapshot.room_id] = (snapshot, hosts, remote)
        return hosts, remote

    async def for_event(self, row: EventsRow) -> set[str]:
        snapshot = await self.state.get(row.room_id)
        if snapshot is None:
            return set()
        hosts: set[str] = set()
        if self._summary(snapshot)[1]:
            hosts = await self._joined_hosts_before(row, snapshot)
        if row.membership in REMOVALS and row.state_key and not row.state_key.endswith(self.suffix):
            hosts.add(server_of(row.state_key))
        return self._filter(hosts, snapshot)

    async def _joined_hosts_before(self, row: EventsRow, snapshot: RoomSnapshot) -> set[str]:
        if not row.is_state and snapshot.last_stream == row.stream_ordering:
            # The room's latest event and no state change: the state before it is the current one.
            return set(self._summary(snapshot)[0])
        state_ids = await self.state.state_ids_at_event(row.event_id, before=True)
        if state_ids is None:
            return set(self._summary(snapshot)[0])
        member_ids = [eid for (etype, _), eid in state_ids.items() if etype == c.MEMBER]
        found = await self.events.get_events(member_ids)
        return {
            server_of(s.event.state_key)
            for s in found.values()
            if s.event.state_key is not None and s.event.content.get("membership") == c.JOIN
        }

    async def room_hosts(self, room_id: str) -> set[str]:
        """Servers with a joined member in the room now (typing, receipts)."""
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            return set()
        return self._filter(self._summary(snapshot)[0], snapshot)

    async def hosts_sharing_rooms(self, user_id: str) -> set[str]:
        """Servers sharing a joined room with the user (presence, device lists)."""
        hosts: set[str] = set()
        rooms = await self.memberships.load_user(user_id)
        for room_id, (membership, _) in list(rooms.items()):
            if membership == c.JOIN:
                hosts |= await self.room_hosts(room_id)
        return hosts


def joined_hosts(memberships: Mapping[str, str]) -> set[str]:
    return {server_of(u) for u, m in memberships.items() if m == c.JOIN}
