"""Which appservices care about an event, a room or a user (Synapse's `is_interested_in_*`).

An appservice is interested in an event when its sender, or for a membership event its state key,
is in the appservice's user namespace (or is its sender user), or when it is interested in the
room: the room id is in its rooms namespace, one of the room's aliases is in its aliases
namespace, or a local user joined to the room is in its user namespace.

Answers are cached as the set of interested appservice ids, per user and per room, so an event
costs a couple of dict lookups whatever the number of appservices. A room's entry is dropped when
a state event of the room arrives (membership, canonical alias...) and when one of its aliases is
created or deleted (`alias_changed`); a generation counter keeps a slow computation from caching
an answer older than the latest drop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from homeserver.appservice.registry import ApplicationService
from homeserver.core.streams import EventsRow
from homeserver.events import constants as c
from homeserver.state.current import CurrentStateCache
from homeserver.storage.stores.rooms import RoomStore

Interested = frozenset[str]


class InterestCache:
    MAX_USERS = 100_000
    MAX_ROOMS = 50_000

    def __init__(
        self,
        services: Sequence[ApplicationService],
        rooms: RoomStore,
        state: CurrentStateCache,
        *,
        server_name: str,
    ) -> None:
        self.services = tuple(services)
        self.rooms = rooms
        self.state = state
        self.local_suffix = ":" + server_name
        self._users: OrderedDict[str, Interested] = OrderedDict()
        self._rooms: OrderedDict[str, Interested] = OrderedDict()
        self._generation: dict[str, int] = {}

    # -- users (pure, regexes) -----------------------------------------------------------------

    def for_user(self, user_id: str) -> Interested:
        found = self._users.get(user_id)
        if found is None:
            found = frozenset(s.id for s in self.services if s.is_interested_in_user(user_id))
            self._users[user_id] = found
            if len(self._users) > self.MAX_USERS:
                self._users.popitem(last=False)
        return found

    def for_event_users(self, row: EventsRow) -> Interested:
        """The appservices interested through the sender or a membership's target."""
        found = self.for_user(row.sender)
        if row.type == c.MEMBER and row.state_key is not None:
            found = found | self.for_user(row.state_key)
        return found

    # -- rooms (cached, computed from aliases and members) ----------------------------------------

    def cached_room(self, room_id: str) -> Interested | None:
        return self._rooms.get(room_id)

    def room_changed(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)
        self._generation[room_id] = self._generation.get(room_id, 0) + 1
        if len(self._generation) > self.MAX_ROOMS:
            # generations only guard computations in flight: old ones can go
            for key in list(self._generation)[: self.MAX_ROOMS // 2]:
                del self._generation[key]

    def alias_changed(self, room_id: str) -> None:
        """Directory hook: an alias of the room was created or deleted."""
        self.room_changed(room_id)

    def on_event_row(self, row: EventsRow) -> None:
        if row.state_key is not None:
            self.room_changed(row.room_id)

    async def for_room(self, room_id: str) -> Interested:
        found = self._rooms.get(room_id)
        if found is not None:
            return found
        generation = self._generation.get(room_id, 0)
        found = await self._compute_room(room_id)
        if self._generation.get(room_id, 0) == generation:
            self._rooms[room_id] = found
            if len(self._rooms) > self.MAX_ROOMS:
                self._rooms.popitem(last=False)
        return found

    async def _compute_room(self, room_id: str) -> Interested:
        interested = {s.id for s in self.services if any(ns.matches(room_id) for ns in s.rooms)}
        rest = [s for s in self.services if s.id not in interested]
        if rest and any(s.aliases for s in rest):
            aliases = await self.rooms.list_aliases(room_id)
            for s in rest:
                if any(s.is_interested_in_alias(a) for a in aliases):
                    interested.add(s.id)
        rest = [s for s in rest if s.id not in interested]
        if rest:
            snapshot = await self.state.get(room_id)
            members = snapshot.members_with(c.JOIN) if snapshot is not None else []
            # Only local users: an appservice acts for users of this server (as Synapse). Through
            # the per-user cache, so a big room costs dict lookups, not regexes.
            wanted = frozenset(s.id for s in rest)
            for user_id in members:
                if user_id.endswith(self.local_suffix):
                    interested.update(self.for_user(user_id) & wanted)
                    if wanted <= interested:
                        break
        return frozenset(interested)

    async def interested_in_event(self, service: ApplicationService, row: EventsRow) -> bool:
        if service.id in self.for_event_users(row):
            return True
        return service.id in await self.for_room(row.room_id)
