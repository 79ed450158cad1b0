"""Simplified sliding sync (MSC4186) on the /sync machinery.

The room lists come from the in-memory membership index and the room summary rows
(summaries.py); timelines, stripped invite state and account data from SyncService; unread counts,
receipts, typing, to-device and key counts from the services /sync uses. What a connection was
already sent lives in connections.py, so an incremental response carries only what changed.
Long-polling waits on the notifier as /sync does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from homeserver.core.tokens import PaginationToken, StreamToken
from homeserver.events import constants as c
from homeserver.metrics.usage import Measure
from homeserver.services.account_data import AccountDataService
from homeserver.services.device_lists import DeviceListService
from homeserver.services.e2e_keys import E2eKeysService
from homeserver.services.notifications import NotificationService
from homeserver.services.receipts import ReceiptService
from homeserver.services.to_device import ToDeviceService
from homeserver.services.typing import TypingService
from homeserver.state.current import RoomSnapshot, StateKey
from homeserver.sync.service import SyncService
from homeserver.sync.sliding.connections import ConnectionStore, ConnState, SentRoom, parse_pos, unknown_pos
from homeserver.sync.sliding.request import ListFilters, RoomParams, SlidingSyncRequest, StateWant
from homeserver.sync.sliding.summaries import RoomSummary, RoomSummaryIndex
from homeserver.sync.unread import unread_totals

MAX_HEROES = 5
_LISTED = (c.JOIN, c.INVITE, c.KNOCK)


@dataclass(slots=True)
class _Wanted:
    """The superset of what the lists and subscriptions that include a room ask for it."""

    required_state: set[StateWant] = field(default_factory=set)
    timeline_limit: int = 0
    lists: set[str] = field(default_factory=set)
    subscribed: bool = False

    def add(self, params: RoomParams) -> None:
        self.required_state.update(params.required_state)
        self.timeline_limit = max(self.timeline_limit, params.timeline_limit)


@dataclass(slots=True)
class _Pass:
    """One computation of a response (a long-poll may run several)."""

    req: SlidingSyncRequest
    since: StreamToken | None
    now: StreamToken
    prev: ConnState
    state: ConnState
    memberships: dict[str, tuple[str, int]]
    response: dict[str, Any]
    news: bool = False
    initial_rooms: set[str] = field(default_factory=set)
    dms: set[str] = field(default_factory=set)


class SlidingSyncService:
    def __init__(
        self,
        sync: SyncService,
        summaries: RoomSummaryIndex,
        notifications: NotificationService,
        account_data: AccountDataService,
        receipts: ReceiptService,
        typing: TypingService,
        to_device: ToDeviceService,
        keys: E2eKeysService,
        device_lists: DeviceListService,
        connections: ConnectionStore,
    ) -> None:
        self.sync_service = sync
        self.summaries = summaries
        self.notifications = notifications
        self.account_data = account_data
        self.receipts = receipts
        self.typing = typing
        self.to_device = to_device
        self.keys = keys
        self.device_lists = device_lists
        self.connections = connections

    # -- entry point -----------------------------------------------------------------------------

    async def sync(self, req: SlidingSyncRequest) -> dict[str, Any]:
        s = self.sync_service
        key = (req.user_id, req.device_id or "", req.conn_id)
        s.notifier.track(req.user_id)
        await s.memberships.load_user(req.user_id)
        since: StreamToken | None = None
        conn_pos: int | None = None
        if req.pos is None:
            await self.connections.start(key)
            prev = ConnState()
        else:
            conn_pos, since = parse_pos(req.pos)
            if since.advanced_past(s.notifier.current):
                raise unknown_pos()  # from another server or before a database reset
            prev = await self.connections.load(key, conn_pos)
        async with Measure("compute_sliding_sync"):
            run = await self._compute(req, since, prev)
        if not run.news and req.timeout_ms > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + req.timeout_ms / 1000
            while not run.news:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await s.notifier.wait_for_change(req.user_id, run.now, remaining):
                    break
                async with Measure("compute_sliding_sync"):
                    run = await self._compute(req, since, prev)
        response = run.response
        if run.news or req.pos is None:
            position = await self.connections.save(key, run.state, conn_pos)
            response["pos"] = f"{position}/{run.now.serialize()}"
        else:
            # Nothing new: the same position again (as Synapse), so the client's state is unchanged.
            assert req.pos is not None
            response["pos"] = req.pos
        if not response["lists"]:
            del response["lists"]  # as Synapse: no `lists` without lists (the encryption loop)
        return {"pos": response.pop("pos"), **response}

    # -- one computation -------------------------------------------------------------------------

    async def _compute(self, req: SlidingSyncRequest, since: StreamToken | None, prev: ConnState) -> _Pass:
        s = self.sync_service
        # The token and the membership list together, with no await in between (see indexes).
        now = s.notifier.current
        memberships = dict(s.memberships.rooms_of(req.user_id) or {})
        response: dict[str, Any] = {"lists": {}, "rooms": {}, "extensions": {}}
        run = _Pass(req, since, now, prev, prev.copy(), memberships, response)
        e0 = since.events if since is not None else 0
        forgotten = s.memberships.forgotten.get(req.user_id, set())
        candidates = {
            room_id: (m, pos)
            for room_id, (m, pos) in memberships.items()
            if pos <= now.events
            and room_id not in forgotten
            and (m in _LISTED or (since is not None and pos > e0))
        }
        wanted: dict[str, _Wanted] = {}
        dms = run.dms = await self._dm_rooms(req.user_id)
        if req.lists:
            summaries = await self.summaries.get_many(candidates)
            ordered = sorted(
                candidates,
                key=lambda r: (-self._bump_stamp(candidates[r], summaries.get(r)), r),
            )
            for name, lst in req.lists.items():
                children: set[str] | None = None
                if lst.filters.spaces is not None:
                    children = set()
                    for space_id in lst.filters.spaces:
                        children |= await self._space_children(space_id)
                rooms = [
                    r
                    for r in ordered
                    if _matches(lst.filters, r, candidates[r][0], summaries.get(r), dms, children)
                ]
                ops = []
                for start, end in lst.ranges or ():
                    window = rooms[start : end + 1]
                    ops.append({"op": "SYNC", "range": [start, end], "room_ids": window})
                    for room_id in window:
                        entry = wanted.setdefault(room_id, _Wanted())
                        entry.add(lst.params)
                        entry.lists.add(name)
                listed = {"count": len(rooms), "ops": ops}
                run.response["lists"][name] = listed
                signature = (len(rooms), tuple((tuple(o["range"]), tuple(o["room_ids"])) for o in ops))
                if prev.lists.get(name) != signature:
                    run.news = True
                run.state.lists[name] = signature
        for room_id, params in req.subscriptions.items():
            # Only rooms the user has (or had) a membership in; others are ignored, as Synapse does.
            entry_m = memberships.get(room_id)
            if entry_m is None or entry_m[1] > now.events or room_id in forgotten:
                continue
            entry = wanted.setdefault(room_id, _Wanted())
            entry.add(params)
            entry.subscribed = True
        if wanted:
            summaries_all = await self.summaries.get_many(wanted)
            for room_id, want in wanted.items():
                await self._room(run, room_id, want, summaries_all.get(room_id))
        await self._extensions(run, wanted)
        return run

    @staticmethod
    def _bump_stamp(entry: tuple[str, int], summary: RoomSummary | None) -> int:
        membership, pos = entry
        if membership != c.JOIN:
            # An invite or knock at the invite; a room left since the last response at the leave.
            return pos
        bump = summary.bump_stamp if summary is not None else 0
        return bump if 0 < bump else pos

    async def _dm_rooms(self, user_id: str) -> set[str]:
        content = await self.account_data.get(user_id, "", "m.direct") or {}
        rooms: set[str] = set()
        for room_ids in content.values():
            if isinstance(room_ids, list):
                rooms.update(r for r in room_ids if isinstance(r, str))
        return rooms

    async def _space_children(self, space_id: str) -> set[str]:
        snapshot = await self.sync_service.state.get(space_id)
        if snapshot is None:
            return set()
        return {
            sk for (t, sk), ev in snapshot.state.items() if t == "m.space.child" and ev.content.get("via")
        }

    # -- rooms -----------------------------------------------------------------------------------

    async def _room(self, run: _Pass, room_id: str, want: _Wanted, summary: RoomSummary | None) -> None:
        s = self.sync_service
        req, user_id = run.req, run.req.user_id
        membership, mpos = run.memberships[room_id]
        before = run.prev.rooms.get(room_id)
        config = frozenset(want.required_state)
        counts = (0, 0)
        if membership in (c.INVITE, c.KNOCK):
            if before is not None and before.membership == membership and before.events_pos >= mpos:
                return
            stripped = await s.stripped_state(room_id, user_id, invite=membership == c.INVITE)
            result: dict[str, Any] = {
                "notification_count": 0,
                "highlight_count": 0,
                "bump_stamp": mpos,
                "initial": True,
                "invite_state": stripped,
            }
            run.response["rooms"][room_id] = result
            run.state.rooms[room_id] = SentRoom(membership, mpos, config, want.timeline_limit, (), counts)
            run.initial_rooms.add(room_id)
            run.news = True
            return

        snapshot = await s.state.get(room_id)
        if snapshot is None:
            return
        upto = run.now.events if membership == c.JOIN else mpos
        if membership == c.JOIN:
            counts = await unread_totals(self.notifications, user_id, room_id)
        meta = self._meta(snapshot, user_id, summary, room_id in run.dms)
        initial = (
            before is None
            or before.membership in (c.INVITE, c.KNOCK)
            or (membership == c.JOIN and before.membership != c.JOIN)
        )
        last = s.room_streams.last.get(room_id, 0)
        if not initial:
            assert before is not None
            if (
                min(last, upto) <= before.events_pos
                and before.required_state >= config
                and before.timeline_limit >= want.timeline_limit
                and before.meta == meta
                and before.counts == counts
                and before.membership == membership
            ):
                return  # nothing new for this room

        # A bigger timeline_limit for a room already sent (Element X opening it): its newest
        # events again, as Synapse does (`unstable_expanded_timeline`).
        expanded = not initial and before is not None and want.timeline_limit > before.timeline_limit
        after = 0 if initial or expanded or before is None else before.events_pos
        timeline, limited, start = await s.recent_events(user_id, room_id, after, upto, want.timeline_limit)
        e0 = run.since.events if run.since is not None else None
        num_live = sum(1 for ev in timeline if ev.stream_ordering > e0) if e0 is not None else 0
        lazy_senders = {ev.event.sender for ev in timeline}
        members = dict(before.members) if before is not None and not initial else {}
        state_now: dict[StateKey, str]
        if membership == c.JOIN:
            state_now = {k: ev.event_id for k, ev in snapshot.state.items()}
        else:
            state_now = await s.state.state_ids_at(snapshot, upto)
        full = initial or before is None or not before.required_state >= config
        selected = _select(want.required_state, state_now, user_id, lazy_senders)
        if not full:
            assert before is not None
            changed = {
                (d.type, d.state_key)
                for d in await s.rooms.state_deltas_between(room_id, before.events_pos, upto)
            }
            selected = {
                k
                for k in selected
                if k in changed or (k[0] == c.MEMBER and members.get(k[1]) != state_now[k])
            }
        state_events = await s.events.get_events_ordered([state_now[k] for k in sorted(selected)])
        for ev in state_events:
            if ev.event.type == c.MEMBER and ev.event.state_key is not None:
                members[ev.event.state_key] = ev.event_id
        for ev in timeline:
            if ev.event.type == c.MEMBER and ev.event.state_key is not None:
                members[ev.event.state_key] = ev.event_id

        result = {"notification_count": counts[0], "highlight_count": counts[1]}
        bump = self._bump_stamp((membership, mpos), summary)
        result["bump_stamp"] = bump
        name, avatar, joined, invited, heroes, is_dm = meta
        old = before.meta if before is not None and not initial else (None,) * 6
        if joined != old[2]:
            result["joined_count"] = joined
        if invited != old[3]:
            result["invited_count"] = invited
        if name and name != old[0]:
            result["name"] = name
        if avatar and avatar != old[1]:
            result["avatar"] = avatar
        if heroes and heroes != old[4]:
            result["heroes"] = [dict(h) for h in heroes]
        if initial:
            result["initial"] = True
        if expanded:
            result["unstable_expanded_timeline"] = True
        if state_events:
            result["required_state"] = await s.serializer.serialize(state_events, include_room_id=False)
        if timeline:
            result["timeline"] = await s.serializer.serialize(
                timeline, user_id=user_id, device_id=req.device_id, include_room_id=False
            )
        result["limited"] = limited
        result["prev_batch"] = PaginationToken(start).serialize()
        result["num_live"] = num_live
        if is_dm:
            result["is_dm"] = True
        run.response["rooms"][room_id] = result
        run.state.rooms[room_id] = SentRoom(
            membership,
            upto,
            config | (before.required_state if before is not None and not full else frozenset()),
            max(want.timeline_limit, before.timeline_limit if before is not None and not initial else 0),
            meta,
            counts,
            tuple(sorted(members.items()))[-1000:],
        )
        if initial:
            run.initial_rooms.add(room_id)
        run.news = True

    @staticmethod
    def _meta(
        snapshot: RoomSnapshot, user_id: str, summary: RoomSummary | None, is_dm: bool
    ) -> tuple[Any, ...]:
        """(name, avatar, joined_count, invited_count, heroes, is_dm) as sent to the client."""
        joined = snapshot.members_with(c.JOIN)
        invited = snapshot.members_with(c.INVITE)
        name = summary.name if summary is not None else None
        avatar = summary.avatar if summary is not None else None
        heroes: tuple[tuple[tuple[str, str], ...], ...] = ()
        if not name:
            ids = sorted(u for u in joined + invited if u != user_id)[:MAX_HEROES]
            if not ids:
                ids = sorted(
                    u for u, m in snapshot.memberships.items() if u != user_id and m in (c.LEAVE, c.BAN)
                )[:MAX_HEROES]
            out = []
            for hero in ids:
                member = snapshot.get(c.MEMBER, hero)
                content = member.content if member is not None else {}
                entry = [("user_id", hero)]
                if isinstance(content.get("displayname"), str):
                    entry.append(("displayname", content["displayname"]))
                if isinstance(content.get("avatar_url"), str):
                    entry.append(("avatar_url", content["avatar_url"]))
                out.append(tuple(entry))
            heroes = tuple(out)
        return (name, avatar, len(joined), len(invited), heroes, is_dm)

    # -- extensions ------------------------------------------------------------------------------

    async def _extensions(self, run: _Pass, wanted: dict[str, _Wanted]) -> None:
        req, exts, out = run.req, run.req.extensions, run.response["extensions"]
        since, now = run.since, run.now
        if "to_device" in exts and req.device_id is not None:
            raw = exts["to_device"].since
            acked = int(raw) if raw is not None else 0  # validated in request.py
            await self.to_device.acknowledge(req.user_id, req.device_id, acked)
            delivery = await self.to_device.deliver(req.user_id, req.device_id, acked, now.to_device)
            out["to_device"] = {"next_batch": str(delivery.position), "events": delivery.events}
            run.news |= bool(delivery.events)
        if "e2ee" in exts and req.device_id is not None:
            counts, fallback = await self.keys.key_counts(req.user_id, req.device_id)
            changed: set[str] = set()
            left: set[str] = set()
            if since is not None and (now.device_lists > since.device_lists or now.events > since.events):
                changed, left = await self.device_lists.changes_between(req.user_id, since, now)
            out["e2ee"] = {
                "device_one_time_keys_count": counts,
                "device_unused_fallback_key_types": fallback,
                "device_lists": {"changed": sorted(changed), "left": sorted(left)},
            }
            run.news |= bool(changed or left)

        def relevant(name: str) -> set[str]:
            ext = exts[name]
            return {r for r, w in wanted.items() if ext.covers(w.lists, r, w.subscribed)}

        joined = {r for r, (m, _) in run.memberships.items() if m == c.JOIN}
        if "account_data" in exts:
            after = since.account_data if since is not None else 0
            items = []
            if after < now.account_data or since is None:
                items = await self.account_data.store.list_since(req.user_id, after, now.account_data)
            fresh = run.initial_rooms if since is not None else set()
            if fresh:
                # Rooms sent in full for the first time get all their account data.
                items += [
                    i
                    for i in await self.account_data.store.list_since(req.user_id, 0, after)
                    if i.room_id in fresh
                ]
            global_events, per_room = await self.sync_service.account_data_changes(
                req.user_id, items, since is None
            )
            rooms = relevant("account_data")
            per_room = {r: evs for r, evs in per_room.items() if r in rooms}
            out["account_data"] = {"global": global_events, "rooms": per_room}
            run.news |= bool(global_events or per_room)
        if "receipts" in exts:
            rooms = relevant("receipts") & joined
            receipts: dict[str, Any] = {}
            changed_rooms: set[str] = set()
            if since is not None and since.receipts < now.receipts:
                changed_rooms = await self.receipts.rooms_changed(req.user_id, since.receipts, rooms)
            for room_id in sorted(rooms):
                if since is None or room_id in run.initial_rooms:
                    events = await self.receipts.room_events(req.user_id, room_id, None)
                elif room_id in changed_rooms:
                    events = await self.receipts.room_events(req.user_id, room_id, since.receipts)
                else:
                    continue
                merged = _merge_receipts(events)
                if merged is not None:
                    receipts[room_id] = merged
            out["receipts"] = {"rooms": receipts}
            run.news |= bool(receipts) and since is not None
        if "typing" in exts:
            rooms = relevant("typing") & joined
            typing: dict[str, Any] = {}
            changed_rooms = self.typing.rooms_changed(since.typing, rooms) if since is not None else set()
            for room_id in sorted(rooms):
                full = since is None or room_id in run.initial_rooms
                if not full and room_id not in changed_rooms:
                    continue
                event = self.typing.room_event(room_id, None if full or since is None else since.typing)
                if event is not None:
                    typing[room_id] = event
            out["typing"] = {"rooms": typing}
            run.news |= bool(typing) and since is not None


def _matches(
    flt: ListFilters,
    room_id: str,
    membership: str,
    summary: RoomSummary | None,
    dms: set[str],
    space_children: set[str] | None,
) -> bool:
    if flt.is_dm is not None and (room_id in dms) != flt.is_dm:
        return False
    if flt.is_invite is not None and (membership == c.INVITE) != flt.is_invite:
        return False
    encrypted = summary.encrypted if summary is not None else False
    if flt.is_encrypted is not None and encrypted != flt.is_encrypted:
        return False
    room_type = summary.room_type if summary is not None else None
    if flt.room_types is not None and room_type not in flt.room_types:
        return False
    if flt.not_room_types is not None and room_type in flt.not_room_types:
        return False
    return space_children is None or room_id in space_children


def _select(wants: set[StateWant], state: dict[StateKey, str], user_id: str, lazy: set[str]) -> set[StateKey]:
    """The state keys `required_state` asks for: `*` wildcards, `$ME`, and `$LAZY` (members who
    sent a timeline event in this response)."""
    keys: set[StateKey] = set()
    for ev_type, state_key in wants:
        if state_key == "$ME":
            state_key = user_id
        if ev_type == "*" and state_key == "*":
            return set(state)
        if state_key == "$LAZY":
            if ev_type == c.MEMBER:
                keys.update((c.MEMBER, u) for u in lazy if (c.MEMBER, u) in state)
        elif state_key == "*":
            keys.update(k for k in state if k[0] == ev_type)
        elif ev_type == "*":
            keys.update(k for k in state if k[1] == state_key)
        elif (ev_type, state_key) in state:
            keys.add((ev_type, state_key))
    return keys


def _merge_receipts(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One `m.receipt` event per room, as Synapse's receipts extension sends."""
    if not events:
        return None
    content: dict[str, Any] = {}
    for event in events:
        for event_id, by_type in event["content"].items():
            for receipt_type, by_user in by_type.items():
                content.setdefault(event_id, {}).setdefault(receipt_type, {}).update(by_user)
    return {"type": "m.receipt", "content": content}
