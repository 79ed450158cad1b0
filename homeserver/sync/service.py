"""/sync: initial and incremental, long-polling on the notifier.

Cost of an incremental sync is proportional to what changed for the user: the rooms to look at
come from the in-memory membership and room-stream indexes, and only rooms whose latest event is
newer than the token are read from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from homeserver.core.tokens import PaginationToken, StreamToken
from homeserver.events import constants as c
from homeserver.events.filter import EventFilter, Filter, RoomEventFilter
from homeserver.metrics.usage import Measure
from homeserver.notifier.notifier import Notifier
from homeserver.services.account_data import AccountDataService
from homeserver.services.serialize import EventSerializer
from homeserver.services.visibility import VisibilityService
from homeserver.state.current import RoomSnapshot
from homeserver.state.indexes import MembershipIndex, RoomStreamIndex, RoomTailCache
from homeserver.state.service import StateService
from homeserver.storage.stores.account_data import AccountDataItem
from homeserver.storage.stores.events import EventStore, StoredEvent
from homeserver.storage.stores.rooms import RoomStore
from homeserver.sync import metrics as sync_metrics
from homeserver.sync.lazy_members import LazyMemberSession, LazyMemberTracker

logger = logging.getLogger(__name__)

MAX_TIMELINE_LIMIT = 100
DEFAULT_TIMELINE_LIMIT = 10
MAX_HEROES = 5


class SyncExtension:
    """A feature that adds to /sync (receipts, typing, presence, to-device, device lists...).

    Its stream positions live in the StreamToken; it advances them through the notifier, which
    wakes the affected users. Override what applies; every method must be cheap when nothing
    changed for the user (compare the token's position with `now` first).
    """

    async def global_part(
        self, req: SyncRequest, since: StreamToken | None, now: StreamToken, response: dict[str, Any]
    ) -> bool:
        """Add top-level sections (to_device, device_lists, presence...). True if any is new."""
        return False

    async def rooms_changed(
        self, req: SyncRequest, since: StreamToken, now: StreamToken, joined: set[str]
    ) -> set[str]:
        """Joined rooms with news for this extension between the tokens (incremental sync only)."""
        return set()

    async def prepare_rooms(
        self, req: SyncRequest, since: StreamToken | None, now: StreamToken, room_ids: list[str]
    ) -> None:
        """Called once before `room_part` runs for these rooms: a chance to batch their reads."""

    async def room_part(
        self,
        req: SyncRequest,
        room_id: str,
        since: StreamToken | None,
        now: StreamToken,
        room: dict[str, Any],
    ) -> None:
        """Add to a joined room's section (ephemeral events, unread counts...)."""

    async def finish(self, req: SyncRequest, response: dict[str, Any]) -> None:
        """Add fields that every response carries, also the empty one after a long-poll timeout
        (e.g. `device_one_time_keys_count`: clients read its absence as "no keys left")."""


@dataclass(slots=True)
class SyncRequest:
    user_id: str
    device_id: str | None
    since: StreamToken | None
    timeout_ms: int
    full_state: bool
    filter: Filter
    set_presence: str | None = None
    # Extensions (receipts, typing, e2ee...) read these.
    extras: dict[str, Any] = field(default_factory=dict)
    # The `filter` parameter as sent (lazy-loaded members are tracked per device and filter).
    filter_key: str = ""
    lazy_members: LazyMemberSession | None = None
    # Set by the sync service: nothing new for this request (the response only moves the token).
    empty: bool = False


class SyncService:
    def __init__(
        self,
        notifier: Notifier,
        state: StateService,
        events: EventStore,
        rooms: RoomStore,
        memberships: MembershipIndex,
        room_streams: RoomStreamIndex,
        visibility: VisibilityService,
        serializer: EventSerializer,
        account_data: AccountDataService,
        room_tails: RoomTailCache,
    ) -> None:
        self.notifier = notifier
        self.state = state
        self.events = events
        self.rooms = rooms
        self.memberships = memberships
        self.room_streams = room_streams
        self.visibility = visibility
        self.serializer = serializer
        self.account_data = account_data
        self.room_tails = room_tails
        self.extensions: list[SyncExtension] = []
        # Global account data every initial sync carries even when never stored (m.push_rules).
        self.default_global_account_data: dict[str, Callable[[str], Awaitable[dict[str, Any]]]] = {}
        # Run when a /sync request starts and when it ends (presence: set_presence, "is syncing").
        self.started_hooks: list[Callable[[SyncRequest], Awaitable[None]]] = []
        self.finished_hooks: list[Callable[[SyncRequest], None]] = []
        self.lazy_members = LazyMemberTracker()

    # -- entry point -----------------------------------------------------------------------------

    async def sync(self, req: SyncRequest) -> dict[str, Any]:
        # One coroutine frame for the whole request: a parked long-poll holds every frame of its
        # await chain, thousands of times over.
        for hook in self.started_hooks:
            await hook(req)
        try:
            self.notifier.track(req.user_id)
            await self.memberships.load_user(req.user_id)
            req.lazy_members = self.lazy_members.begin(req)
            async with Measure("compute_sync"):
                result, now = await self._compute(req)
            if result is None and req.timeout_ms > 0:
                # A wake-up may bring nothing for this request (a presence or device-list notification
                # whose position the token already had, or a change its filter drops): park again for
                # the rest of the timeout instead of answering empty, as Synapse does.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + req.timeout_ms / 1000
                while result is None:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or not await self.notifier.wait_for_change(req.user_id, now, remaining):
                        break
                    async with Measure("compute_sync"):
                        result, now = await self._compute(req)
            if result is None:
                result = self._empty(now)
                req.empty = True
            else:
                kind = (
                    "initial_sync"
                    if req.since is None
                    else "full_state_sync"
                    if req.full_state
                    else "incremental_sync"
                )
                sync_metrics.nonempty.labels(kind, str(req.filter.lazy_load_members)).inc()
            for ext in self.extensions:
                await ext.finish(req, result)
            if req.lazy_members is not None:
                self.lazy_members.finish(req.lazy_members, result["next_batch"])
            return result
        finally:
            for done in self.finished_hooks:
                done(req)

    @staticmethod
    def _empty(now: StreamToken) -> dict[str, Any]:
        return {
            "next_batch": now.serialize(),
            "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
            "account_data": {"events": []},
            "presence": {"events": []},
        }

    async def _compute(self, req: SyncRequest) -> tuple[dict[str, Any] | None, StreamToken]:
        # Take the token and the user's room list together, with no await in between (see indexes).
        now = self.notifier.current
        rooms = dict(self.memberships.rooms_of(req.user_id) or {})
        forgotten = set(self.memberships.forgotten.get(req.user_id, ()))
        since = None if req.full_state else req.since
        if since is not None and not now.advanced_past(since):
            return None, now
        if req.lazy_members is not None:
            req.lazy_members.sent.clear()  # a second computation after a long-poll starts over

        response = self._empty(now)
        sections = response["rooms"]
        room_filter = req.filter.room
        e0 = since.events if since is not None else 0
        e1 = now.events
        global_ad, room_ad = await self._account_data(req, since, now)
        ext_rooms: set[str] = set()
        if since is not None and self.extensions:
            joined = {r for r, (m, pos) in rooms.items() if m == c.JOIN and pos <= e1}
            for ext in self.extensions:
                ext_rooms |= await ext.rooms_changed(req, since, now, joined)

        if since is None:
            await self._prefetch_rooms(
                req, [r for r, (m, pos) in rooms.items() if m == c.JOIN and pos <= e1], e1
            )
        for room_id, (membership, mpos) in rooms.items():
            if not room_filter.room_allowed(room_id) or mpos > e1:
                continue
            if since is None:
                if membership == c.JOIN:
                    sections["join"][room_id] = await self._joined_room(req, room_id, None, e1, room_ad)
                elif membership == c.INVITE:
                    sections["invite"][room_id] = await self._invited_room(room_id, req.user_id)
                elif membership == c.KNOCK:
                    sections["knock"][room_id] = await self._knocked_room(room_id, req.user_id)
                elif req.filter.include_leave and room_id not in forgotten:
                    sections["leave"][room_id] = await self._left_room(req, room_id, None, mpos)
                continue
            changed = e0 < mpos <= e1
            if membership == c.JOIN:
                if changed and await self._was_not_joined_before(room_id, req.user_id, mpos):
                    sections["join"][room_id] = await self._joined_room(req, room_id, None, e1, room_ad)
                elif (
                    self.room_streams.last.get(room_id, 0) > e0 or room_id in room_ad or room_id in ext_rooms
                ):
                    sections["join"][room_id] = await self._joined_room(req, room_id, e0, e1, room_ad)
            elif not changed:
                continue
            elif membership == c.INVITE:
                sections["invite"][room_id] = await self._invited_room(room_id, req.user_id)
            elif membership == c.KNOCK:
                sections["knock"][room_id] = await self._knocked_room(room_id, req.user_id)
            else:
                sections["leave"][room_id] = await self._left_room(req, room_id, e0, mpos)

        response["account_data"]["events"] = global_ad
        extension_news = False
        for ext in self.extensions:
            if sections["join"]:
                await ext.prepare_rooms(req, since, now, list(sections["join"]))
            for room_id, room in sections["join"].items():
                await ext.room_part(req, room_id, since, now, room)
            extension_news |= await ext.global_part(req, since, now, response)
        empty = not global_ad and not any(sections.values()) and not extension_news
        if since is not None and empty:
            return None, now
        return response, now

    async def _prefetch_rooms(self, req: SyncRequest, joined: list[str], upto: int) -> None:
        """An initial sync reads the same things in every joined room: load them for all rooms at
        once. The visibility and membership histories (timeline filtering), and the state deltas
        after each room's timeline start (state at the start), bounded below by the oldest event
        the timeline can start after (known from the in-memory room tails)."""
        joined = [r for r in joined if req.filter.room.room_allowed(r)]
        await self.visibility.prefetch(req.user_id, joined)
        limit = self._timeline_limit(req.filter.room.timeline)
        bounds: dict[str, int] = {}
        for room_id in joined:
            tail = self.room_tails.between(room_id, 0, upto, limit + 1, newest_first=True)
            if tail is not None and limit > 0:
                bounds[room_id] = tail[-1][1] if len(tail) > limit else 0
        await self.state.prefetch_deltas(bounds, upto)

    # -- account data ----------------------------------------------------------------------------

    async def _account_data(
        self, req: SyncRequest, since: StreamToken | None, now: StreamToken
    ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        after = since.account_data if since is not None else 0
        if after >= now.account_data and since is not None:
            return [], {}
        items = await self.account_data.store.list_since(req.user_id, after, now.account_data)
        return await self.account_data_changes(
            req.user_id, items, since is None, req.filter.account_data, req.filter.room.account_data
        )

    async def account_data_changes(
        self,
        user_id: str,
        items: list[AccountDataItem],
        initial: bool,
        ad_filter: EventFilter | None = None,
        room_ad_filter: EventFilter | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        """Account data items as sync events (global, per room), through the filters when given;
        an initial sync also gets the defaults never stored (m.push_rules). Also sliding sync's
        account_data extension."""
        global_events = []
        per_room: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            event = {"type": item.type, "content": item.content}
            if item.room_id == "":
                if ad_filter is None or ad_filter.matches(item.type, user_id):
                    global_events.append(event)
            elif room_ad_filter is None or room_ad_filter.matches(item.type, user_id):
                per_room.setdefault(item.room_id, []).append(event)
        if initial:
            present = {e["type"] for e in global_events}
            for ad_type, provider in self.default_global_account_data.items():
                if ad_type not in present and (ad_filter is None or ad_filter.matches(ad_type, user_id)):
                    global_events.append({"type": ad_type, "content": await provider(user_id)})
        return global_events, per_room

    # -- rooms -----------------------------------------------------------------------------------

    async def _was_not_joined_before(self, room_id: str, user_id: str, mpos: int) -> bool:
        history = await self.visibility._history(room_id, c.MEMBER, user_id, "membership")
        before = [m for pos, m in history if pos < mpos]
        return not before or before[-1] != c.JOIN

    def _timeline_limit(self, flt: RoomEventFilter) -> int:
        return flt.effective_limit(DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT)

    async def _timeline(
        self, req: SyncRequest, room_id: str, after: int, upto: int
    ) -> tuple[list[StoredEvent], bool, int]:
        """Visible timeline events in (after, upto], newest `limit`; returns (events, limited, start)."""
        flt = req.filter.room.timeline
        visible, limited, start = await self.recent_events(
            req.user_id, room_id, after, upto, self._timeline_limit(flt)
        )
        if not flt.is_unconstrained:
            visible = [s for s in visible if flt.matches_event(s.event, room_id)]
        return visible, limited, start

    async def recent_events(
        self, user_id: str, room_id: str, after: int, upto: int, limit: int
    ) -> tuple[list[StoredEvent], bool, int]:
        """The newest `limit` events in (after, upto] the user may see, oldest first; returns
        (events, limited, start) where `start` is the position before the first one (the
        `prev_batch`). Also sliding sync's timeline."""
        if limit <= 0:
            limited = self.room_streams.last.get(room_id, 0) > after
            return [], limited, upto
        ids = self.room_tails.between(room_id, after, upto, limit + 1, newest_first=True)
        if ids is None:
            ids = await self.events.room_event_ids_between(
                room_id, after, upto, limit=limit + 1, newest_first=True
            )
        raw = await self.events.get_events_ordered([event_id for event_id, _ in ids])
        limited = len(raw) > limit
        raw = raw[:limit]
        raw.reverse()
        start = raw[0].stream_ordering - 1 if raw else upto
        return await self.visibility.filter_events(user_id, room_id, raw), limited, start

    async def _joined_room(
        self,
        req: SyncRequest,
        room_id: str,
        since: int | None,
        upto: int,
        room_ad: dict[str, list[dict[str, Any]]],
    ) -> dict[str, Any]:
        snapshot = await self.state.get(room_id)
        assert snapshot is not None
        timeline, limited, start = await self._timeline(req, room_id, since or 0, upto)
        state_filter = req.filter.room.state
        lazy = req.filter.lazy_load_members
        # State: everything at the timeline start on a full sync; on an incremental one, only keys
        # that changed between the token and the timeline start (a gap the timeline does not show).
        state_ids: dict[tuple[str, str], str]
        at_start: dict[tuple[str, str], str] = {}
        changed_members: set[str] = set()
        if since is None:
            state_ids = await self.state.state_ids_at(snapshot, start)
        elif limited:
            at_start = await self.state.state_ids_at(snapshot, start)
            changed = (
                set()
                if snapshot.state_unchanged_since(since)
                else {
                    (d.type, d.state_key)
                    for d in await self.rooms.state_deltas_between(room_id, since, start)
                }
            )
            state_ids = {k: v for k, v in at_start.items() if k in changed}
            changed_members = {k[1] for k in changed if k[0] == c.MEMBER}
        else:
            state_ids = {}
        if lazy:
            wanted = {s.event.sender for s in timeline} | {req.user_id}
            if since is not None:
                # Senders' member events (as at the timeline start), unless the timeline itself
                # carries them; those this device was already sent are dropped below
                # (sync/lazy_members.py).
                in_timeline = {s.event.state_key for s in timeline if s.event.type == c.MEMBER}
                wanted -= in_timeline
                if limited:
                    state_ids.update(
                        {k: v for k, v in at_start.items() if k[0] == c.MEMBER and k[1] in wanted}
                    )
                else:  # only the wanted members, not a copy of a (maybe huge) room's state
                    state_ids.update(await self.state.member_ids_at(snapshot, start, wanted))
            # Membership changes inside a limited gap stay: the client would miss them otherwise.
            keep = wanted | (changed_members if limited and since is not None else set())
            state_ids = {k: v for k, v in state_ids.items() if k[0] != c.MEMBER or k[1] in keep}
            sent = req.lazy_members
            if sent is not None and since is not None:
                # Not again what this device already has (the same member event).
                state_ids = {
                    k: v for k, v in state_ids.items() if k[0] != c.MEMBER or not sent.has(room_id, k[1], v)
                }
        state_events = await self.events.get_events_ordered(list(state_ids.values()))
        if not state_filter.is_unconstrained:
            state_events = [s for s in state_events if state_filter.matches_event(s.event, room_id)]
        if lazy and req.lazy_members is not None:
            self._record_members(req.lazy_members, room_id, state_events, timeline)

        room: dict[str, Any] = {
            "timeline": {
                "events": await self.serializer.serialize(
                    timeline, user_id=req.user_id, device_id=req.device_id, include_room_id=False
                ),
                "limited": limited,
                "prev_batch": PaginationToken(start).serialize(),
            },
            "state": {"events": await self.serializer.serialize(state_events, include_room_id=False)},
            "account_data": {"events": room_ad.get(room_id, [])},
            "ephemeral": {"events": []},
        }
        if since is None or any(s.event.type == c.MEMBER for s in timeline) or limited:
            room["summary"] = self._summary(snapshot, req.user_id)
        return room

    @staticmethod
    def _record_members(
        sent: LazyMemberSession, room_id: str, state: list[StoredEvent], timeline: list[StoredEvent]
    ) -> None:
        for stored in (*state, *timeline):
            event = stored.event
            if event.type == c.MEMBER and event.state_key is not None:
                sent.record(room_id, event.state_key, event.event_id)

    @staticmethod
    def _summary(snapshot: RoomSnapshot, user_id: str) -> dict[str, Any]:
        joined = snapshot.members_with(c.JOIN)
        invited = snapshot.members_with(c.INVITE)
        summary: dict[str, Any] = {
            "m.joined_member_count": len(joined),
            "m.invited_member_count": len(invited),
        }
        if not snapshot.get("m.room.name") and not snapshot.get("m.room.canonical_alias"):
            heroes = sorted(u for u in joined + invited if u != user_id)[:MAX_HEROES]
            if not heroes:
                heroes = sorted(
                    u for u, m in snapshot.memberships.items() if u != user_id and m in (c.LEAVE, c.BAN)
                )[:MAX_HEROES]
            summary["m.heroes"] = heroes
        return summary

    async def _stripped_room(self, room_id: str, user_id: str, unsigned_key: str) -> list[dict[str, Any]]:
        """The stripped state of an invite or knock, ending with the member event itself."""
        snapshot = await self.state.get(room_id)
        member = snapshot.get(c.MEMBER, user_id) if snapshot else None
        if member is None or member.content.get("membership") not in (c.INVITE, c.KNOCK):
            # An invite or knock in a room this server is not in is an out-of-band outlier: it is
            # the user's membership row, not the room's state.
            row = await self.rooms.get_membership(room_id, user_id)
            stored = await self.events.get_event(row.event_id) if row is not None else None
            if stored is not None:
                member = stored.event
        if member is None:
            return []
        events = [dict(s) for s in member.unsigned.get(unsigned_key, [])]
        events.append(
            {
                "type": member.type,
                "state_key": member.state_key,
                "content": member.content,
                "sender": member.sender,
                "event_id": member.event_id,
                "origin_server_ts": member.origin_server_ts,
            }
        )
        return events

    async def stripped_state(self, room_id: str, user_id: str, invite: bool = True) -> list[dict[str, Any]]:
        """An invite's (or knock's) stripped state, ending with the member event itself."""
        key = "invite_room_state" if invite else "knock_room_state"
        return await self._stripped_room(room_id, user_id, key)

    async def _invited_room(self, room_id: str, user_id: str) -> dict[str, Any]:
        return {"invite_state": {"events": await self._stripped_room(room_id, user_id, "invite_room_state")}}

    async def _knocked_room(self, room_id: str, user_id: str) -> dict[str, Any]:
        return {"knock_state": {"events": await self._stripped_room(room_id, user_id, "knock_room_state")}}

    async def _left_room(
        self, req: SyncRequest, room_id: str, since: int | None, leave_pos: int
    ) -> dict[str, Any]:
        snapshot = await self.state.get(room_id)
        assert snapshot is not None
        timeline, limited, start = await self._timeline(req, room_id, since or 0, leave_pos)
        state_ids = await self.state.state_ids_at(snapshot, start) if since is None or limited else {}
        if req.filter.lazy_load_members:
            wanted = {s.event.sender for s in timeline} | {req.user_id}
            state_ids = {k: v for k, v in state_ids.items() if k[0] != c.MEMBER or k[1] in wanted}
        state_events = await self.events.get_events_ordered(list(state_ids.values()))
        return {
            "timeline": {
                "events": await self.serializer.serialize(
                    timeline, user_id=req.user_id, device_id=req.device_id, include_room_id=False
                ),
                "limited": limited,
                "prev_batch": PaginationToken(start).serialize(),
            },
            "state": {"events": await self.serializer.serialize(state_events, include_room_id=False)},
            "account_data": {"events": []},
        }
