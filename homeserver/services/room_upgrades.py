"""Room upgrades (client-server "Room Upgrades", `POST /rooms/{roomId}/upgrade`), as Synapse does them.

1. The upgrader needs to be joined and allowed to send `m.room.tombstone` (403 otherwise); unknown
   rooms are 404, unknown or unsupported versions 400 M_UNSUPPORTED_ROOM_VERSION.
2. One atomic unit creates the replacement room and tombstones the old one: the create event
   (`predecessor`, the room `type`, `m.federate: false` when the old room had it), the upgrader's
   join, the power levels (copied, string levels made integers; the upgrader is raised for now to
   the highest level any copied state needs), the transferable state (join rules, name, topic,
   avatar, history visibility, guest access, encryption, server ACLs, and a space's children), the
   old room's bans, then `m.room.tombstone` in the old room. Either all of it happens or none.
3. Then, each step on its own (a failure is logged, the upgrade stands): local aliases move to the
   new room, the canonical alias follows them, a published room is replaced in the directory by the
   new one, the old room's power levels are restricted (`events_default` and `invite` raised to
   max(50, users_default + 1)) and the upgrader's temporary level in the new room is restored.
   Local members' tags, `m.direct` entries and room push rules are copied to the new room.

Members and invites are not carried over (the client API's upgrade, like Synapse's): members follow
the tombstone. `predecessor.event_id` names the last event of the old room before the tombstone
(the spec's "last known event"; Synapse names the tombstone itself, which is sent after the new
room exists and so cannot be referenced from its create event in one atomic unit here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events import constants as c
from homeserver.events.auth import CREATOR_POWER_LEVEL, can_send, parse_power_level, room_creators
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.http.requester import Requester
from homeserver.persist.persister import EventDraft, EventPersister
from homeserver.services.account_data import AccountDataService
from homeserver.services.membership import MembershipService
from homeserver.services.push_rules import PushRulesService
from homeserver.services.room_presets import TOMBSTONE_LEVEL_V12, default_power_levels
from homeserver.state.current import CurrentStateCache, RoomSnapshot
from homeserver.storage.stores.rooms import RoomStore

logger = logging.getLogger(__name__)

TOMBSTONE = "m.room.tombstone"
CANONICAL_ALIAS = "m.room.canonical_alias"
SPACE_CHILD = "m.space.child"
# State copied to the replacement room (state key ""), in this order (Synapse's list).
TRANSFERRED_TYPES = (
    c.JOIN_RULES,
    "m.room.name",
    "m.room.topic",
    c.HISTORY_VISIBILITY,
    "m.room.guest_access",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
)
TAG_TYPE = "m.tag"
DIRECT_TYPE = "m.direct"
PUSH_RULE_KINDS = ("override", "room", "underride")


def fixup_power_levels(content: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of power levels content with string levels made integers and invalid values dropped
    (Synapse's copy_and_fixup_power_levels_contents; v10+ rooms accept integers only), and `users`
    keys that are no user ids left out (the auth rules would refuse them)."""
    fixed: dict[str, Any] = {}
    for key, value in content.items():
        if isinstance(value, Mapping):
            inner: dict[str, int] = {}
            for sub_key, sub_value in value.items():
                level = parse_power_level(sub_value)
                if level is not None and (key != "users" or _looks_like_user_id(sub_key)):
                    inner[sub_key] = level
            fixed[key] = inner
        else:
            level = parse_power_level(value)
            if level is not None:
                fixed[key] = level
    return fixed


def _looks_like_user_id(value: str) -> bool:
    return value.startswith("@") and ":" in value


def _int(value: Any, default: int) -> int:
    level = parse_power_level(value)
    return default if level is None else level


def _level_needed_to_copy_state(power_levels: Mapping[str, Any]) -> int:
    """The level the upgrader needs to send every copied state event and ban."""
    events = power_levels.get("events")
    event_levels = [v for v in events.values() if isinstance(v, int)] if isinstance(events, Mapping) else []
    return max(
        _int(power_levels.get("state_default"), 50),
        _int(power_levels.get("ban"), 50),
        max(event_levels, default=0),
    )


def _user_level(power_levels: Mapping[str, Any], user_id: str) -> int:
    users = power_levels.get("users")
    default = _int(power_levels.get("users_default"), 0)
    if isinstance(users, Mapping) and user_id in users:
        return _int(users[user_id], default)
    return default


def old_creators(snapshot: RoomSnapshot) -> set[str]:
    """The old room's privileged creators (room v12+; empty before): they are not listed in its power
    levels, so an upgrade has to say what they become."""
    create = snapshot.get(c.CREATE)
    if create is None or not create.room_version.privileged_creators:
        return set()
    return set(room_creators(create))


def _power_levels_for_creators(
    power_levels: dict[str, Any], old: set[str], version: RoomVersion, new: set[str]
) -> dict[str, Any]:
    """Power levels for the replacement room: the old room's creators who are not creators of the new
    one keep admin rights (100) rather than falling to users_default; in a v12+ room the new
    creators are left out (the auth rules refuse them) and the tombstone level is made higher than
    state_default (create_room.yaml's rule for v12 rooms)."""
    content = dict(power_levels)
    users = dict(content.get("users") or {})
    for user_id in sorted(old):
        if not (version.privileged_creators and user_id in new):
            users.setdefault(user_id, 100)
    if version.privileged_creators:
        users = {u: level for u, level in users.items() if u not in new}
        events = dict(content.get("events") or {})
        state_default = _int(content.get("state_default"), 50)
        if _int(events.get(TOMBSTONE), state_default) <= state_default:
            events[TOMBSTONE] = max(TOMBSTONE_LEVEL_V12, state_default + 1)
        content["events"] = events
    content["users"] = users
    return content


class _ReplacementRoomId:
    """Carries the replacement room's id from its first events to the old room's tombstone.

    The drafts of an upgrade form one atomic unit, built in order. From room v12 the new room's id
    is only known once its create event is built, so the upgrader's join (the next draft) records
    the id from the snapshot it is built on, and the tombstone, built last, takes it into its
    content. Before v12 the recorded id is the one the drafts already use.
    """

    def __init__(self, provisional: str) -> None:
        self.room_id = provisional

    def record(self, snapshot: RoomSnapshot) -> None:
        self.room_id = snapshot.room_id

    def fill(self, tombstone: EventDraft) -> Callable[[RoomSnapshot], None]:
        def precondition(_: RoomSnapshot) -> None:
            tombstone.content["replacement_room"] = self.room_id

        return precondition


# How long a repeated upgrade request by the same user returns the same replacement room.
RETRY_WINDOW_MS = 5 * 60 * 1000


class RoomUpgradeService:
    def __init__(
        self,
        persister: EventPersister,
        state: CurrentStateCache,
        rooms: RoomStore,
        membership: MembershipService,
        account_data: AccountDataService,
        push_rules: PushRulesService,
        clock: Any,
        *,
        server_name: str,
    ) -> None:
        self.persister = persister
        self.state = state
        self.rooms = rooms
        self.membership = membership
        self.account_data = account_data
        self.push_rules = push_rules
        self.clock = clock
        self.server_name = server_name
        # old room id -> (upgrading user, result): a repeated request joins the running upgrade
        self._running: dict[str, tuple[str, asyncio.Future[str]]] = {}
        # (room_id, user_id) -> (replacement room, finished at ms): a retried request (the client
        # lost the response) gets the same room for a while, like Synapse's response cache.
        self._recent: dict[tuple[str, str], tuple[str, int]] = {}

    def _is_local(self, identifier: str) -> bool:
        return ids.server_of(identifier) == self.server_name

    def _is_local_alias(self, alias: str) -> bool:
        return ids.is_valid_room_alias(alias) and self._is_local(alias)

    async def upgrade_room(self, requester: Requester, room_id: str, body: Mapping[str, Any]) -> str:
        """upgradeRoom: returns the replacement room's id."""
        if requester.is_guest:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")
        if "new_version" not in body:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing params: ['new_version']")
        requested = body["new_version"]
        version = get_room_version(requested) if isinstance(requested, str) else None
        if version is None:
            raise MatrixError(
                400, "M_UNSUPPORTED_ROOM_VERSION", "Your homeserver does not support this room version"
            )
        additional_creators = body.get("additional_creators", [])
        if not isinstance(additional_creators, list) or not all(
            isinstance(u, str) and ids.is_valid_user_id(u) for u in additional_creators
        ):
            raise MatrixError(400, "M_BAD_JSON", "'additional_creators' must be a list of user ids")
        # Only meaningful where the new version has creators besides the upgrader (v12+).
        extra_creators = (
            [u for u in dict.fromkeys(additional_creators) if u != requester.user_id]
            if version.privileged_creators
            else []
        )
        if not ids.is_valid_room_id(room_id) or await self.rooms.get_room(room_id) is None:
            raise not_found(f"Unknown room id {room_id}")
        user_id = requester.user_id
        now = self.clock.time_ms()
        recent = self._recent.get((room_id, user_id))
        if recent is not None and now - recent[1] < RETRY_WINDOW_MS:
            return recent[0]
        running = self._running.get(room_id)  # no await from here until registered below
        if running is not None:
            if running[0] != user_id:
                raise MatrixError(400, "M_UNKNOWN", "An upgrade for this room is currently in progress")
            return await asyncio.shield(running[1])
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._running[room_id] = (user_id, future)
        try:
            new_room_id = await self._upgrade(user_id, room_id, version, extra_creators)
            future.set_result(new_room_id)
            self._recent = {k: v for k, v in self._recent.items() if now - v[1] < RETRY_WINDOW_MS}
            self._recent[(room_id, user_id)] = (new_room_id, self.clock.time_ms())
            return new_room_id
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._running[room_id]

    async def _upgrade(
        self, user_id: str, old_room_id: str, version: RoomVersion, extra_creators: list[str]
    ) -> str:
        snapshot = await self.state.get(old_room_id)
        if snapshot is None:
            raise not_found(f"Unknown room id {old_room_id}")
        if not can_send(user_id, TOMBSTONE, "", snapshot.state):
            raise forbidden("You don't have permission to upgrade this room")
        room = await self.rooms.get_room(old_room_id)
        # Room v12+: provisional; the replacement room's id derives from its create event, known
        # only once the persister has built it (see _ReplacementRoomId).
        new_room_id = ids.new_room_id(self.server_name)

        old_pl_event = snapshot.get(c.POWER_LEVELS)
        original_pl = (
            fixup_power_levels(old_pl_event.content)
            if old_pl_event is not None
            else default_power_levels(user_id, [], False, privileged_creators=version.privileged_creators)
        )
        original_pl = _power_levels_for_creators(
            original_pl, old_creators(snapshot), version, {user_id, *extra_creators}
        )
        drafts, raised = await self._replacement_room_drafts(
            user_id, snapshot, new_room_id, version, original_pl, extra_creators
        )
        replacement = _ReplacementRoomId(new_room_id)
        drafts[1].precondition = replacement.record  # the upgrader's join, first event after the create
        tombstone = EventDraft(
            old_room_id,
            TOMBSTONE,
            user_id,
            {"body": "This room has been replaced", "replacement_room": new_room_id},
            "",
        )
        tombstone.precondition = replacement.fill(tombstone)
        drafts.append(tombstone)
        persisted = await self.persister.send(drafts, new_room_version=version)
        new_room_id = persisted[0].event.room_id
        logger.info(
            "%s upgraded %s to version %s as %s", user_id, old_room_id, version.identifier, new_room_id
        )

        await self._move_aliases(user_id, snapshot, new_room_id)
        if room is not None and room.is_public:
            await self.rooms.set_public(old_room_id, False)
            await self.rooms.set_public(new_room_id, True)
        if old_pl_event is not None:
            await self._restrict_old_room(user_id, old_room_id, old_pl_event.content)
        if raised:
            await self._send_quietly(EventDraft(new_room_id, c.POWER_LEVELS, user_id, original_pl, ""))
        await self._copy_user_state(snapshot, old_room_id, new_room_id)
        return new_room_id

    async def _replacement_room_drafts(
        self,
        user_id: str,
        snapshot: RoomSnapshot,
        new_room_id: str,
        version: RoomVersion,
        original_pl: dict[str, Any],
        extra_creators: list[str],
    ) -> tuple[list[EventDraft], bool]:
        """The events creating the replacement room, and whether the upgrader was raised."""

        def draft(etype: str, content: Mapping[str, Any], state_key: str = "") -> EventDraft:
            return EventDraft(new_room_id, etype, user_id, dict(content), state_key)

        old_create = snapshot.content_of(c.CREATE)
        create_content: dict[str, Any] = {
            "room_version": version.identifier,
            "predecessor": {"room_id": snapshot.room_id},
        }
        if snapshot.extremities:
            create_content["predecessor"]["event_id"] = snapshot.extremities[-1]
        if old_create.get("m.federate", True) is False:
            create_content["m.federate"] = False
        room_type = old_create.get("type")
        if room_type is not None:
            create_content["type"] = room_type
        if not version.implicit_room_creator:
            create_content["creator"] = user_id
        if extra_creators:
            create_content["additional_creators"] = list(extra_creators)
        creators = {user_id, *extra_creators} if version.privileged_creators else set()

        power_levels = fixup_power_levels(original_pl)
        users = power_levels.get("users")
        if not isinstance(users, dict):
            users = power_levels["users"] = {}
        if version.privileged_creators:
            raised = False  # the upgrader is a creator: infinite power
            own_level = CREATOR_POWER_LEVEL
        else:
            needed = _level_needed_to_copy_state(power_levels)
            raised = _user_level(power_levels, user_id) < needed
            if raised:
                users[user_id] = needed
            own_level = _user_level(power_levels, user_id)

        drafts = [
            draft(c.CREATE, create_content),
            draft(c.MEMBER, await self.membership.member_content(user_id, c.JOIN), user_id),
            draft(c.POWER_LEVELS, power_levels),
        ]
        # What an absent event meant in the old room, written out (createRoom's private_chat preset).
        if snapshot.get(c.JOIN_RULES) is None:
            drafts.append(draft(c.JOIN_RULES, {"join_rule": c.INVITE}))
        if snapshot.get(c.HISTORY_VISIBILITY) is None:
            drafts.append(draft(c.HISTORY_VISIBILITY, {"history_visibility": "shared"}))
        for etype in TRANSFERRED_TYPES:
            event = snapshot.get(etype)
            if event is not None:
                drafts.append(draft(etype, event.content))
        if room_type == "m.space":
            children = sorted(
                (key[1], event) for key, event in snapshot.state.items() if key[0] == SPACE_CHILD
            )
            for state_key, event in children:
                if event.content:  # an emptied child link was removed from the space
                    drafts.append(draft(SPACE_CHILD, event.content, state_key))
        for banned in sorted(snapshot.members_with(c.BAN)):
            event = snapshot.get(c.MEMBER, banned)
            if event is None or banned in creators or _user_level(power_levels, banned) >= own_level:
                continue  # the auth rules would refuse the ban (and the whole upgrade with it)
            drafts.append(draft(c.MEMBER, event.content, banned))
        return drafts, raised

    async def _send_quietly(self, draft: EventDraft) -> None:
        try:
            await self.persister.send_one(draft)
        except MatrixError as exc:
            logger.warning("room upgrade: could not send %s in %s: %s", draft.type, draft.room_id, exc)

    async def _move_aliases(self, user_id: str, snapshot: RoomSnapshot, new_room_id: str) -> None:
        """Local aliases now resolve to the new room; the canonical alias event follows them."""
        old_room_id = snapshot.room_id
        now = self.clock.time_ms()
        for alias in await self.rooms.list_aliases(old_room_id):
            found = await self.rooms.get_alias(alias)
            if found is None or found[0] != old_room_id:
                continue
            await self.rooms.delete_alias(alias)
            await self.rooms.insert_alias(alias, new_room_id, found[1], now)
        event = snapshot.get(CANONICAL_ALIAS)
        if event is None:
            return
        old_content = dict(event.content)
        new_content: dict[str, Any] = {}
        canonical = old_content.get("alias")
        if isinstance(canonical, str) and self._is_local_alias(canonical):
            new_content["alias"] = canonical
            del old_content["alias"]
        alt = old_content.get("alt_aliases")
        if isinstance(alt, list):
            moved = [a for a in alt if isinstance(a, str) and self._is_local_alias(a)]
            if moved:
                new_content["alt_aliases"] = moved
                remaining = [a for a in alt if a not in moved]
                if remaining:
                    old_content["alt_aliases"] = remaining
                else:
                    del old_content["alt_aliases"]
        if not new_content:
            return
        await self._send_quietly(EventDraft(old_room_id, CANONICAL_ALIAS, user_id, old_content, ""))
        await self._send_quietly(EventDraft(new_room_id, CANONICAL_ALIAS, user_id, new_content, ""))

    async def _restrict_old_room(self, user_id: str, room_id: str, old_content: Mapping[str, Any]) -> None:
        """Stop ordinary members from talking and inviting in the old room."""
        content = fixup_power_levels(old_content)
        restricted = max(_int(content.get("users_default"), 0) + 1, 50)
        updated = False
        for name in ("invite", "events_default"):
            if _int(content.get(name), 0) < restricted:
                content[name] = restricted
                updated = True
        if updated:
            await self._send_quietly(EventDraft(room_id, c.POWER_LEVELS, user_id, content, ""))

    # -- per-user state ------------------------------------------------------------------------

    async def _copy_user_state(self, snapshot: RoomSnapshot, old_room_id: str, new_room_id: str) -> None:
        """Tags, m.direct entries and room push rules of the old room's local members (best effort)."""
        for user_id in sorted(u for u in snapshot.members_with(c.JOIN) if self._is_local(u)):
            try:
                await self._copy_tags_and_direct(user_id, old_room_id, new_room_id)
                await self._copy_push_rules(user_id, old_room_id, new_room_id)
            except Exception:
                logger.exception("room upgrade: copying %s's settings to %s failed", user_id, new_room_id)

    async def _copy_tags_and_direct(self, user_id: str, old_room_id: str, new_room_id: str) -> None:
        tags = await self.account_data.get(user_id, old_room_id, TAG_TYPE)
        if tags and tags.get("tags"):
            await self.account_data.put(user_id, new_room_id, TAG_TYPE, dict(tags), internal=True)
        direct = await self.account_data.get(user_id, "", DIRECT_TYPE)
        if not direct:
            return
        changed = False
        updated: dict[str, Any] = {}
        for other, room_ids in direct.items():
            if isinstance(room_ids, list) and old_room_id in room_ids and new_room_id not in room_ids:
                updated[other] = [*room_ids, new_room_id]
                changed = True
            else:
                updated[other] = room_ids
        if changed:
            await self.account_data.put(user_id, "", DIRECT_TYPE, updated, internal=True)

    async def _copy_push_rules(self, user_id: str, old_room_id: str, new_room_id: str) -> None:
        """User rules about the old room (a `room` rule, or override/underride rules matching its id,
        such as a client's "mute this room") get a twin for the new room."""
        ruleset = await self.push_rules.ruleset(user_id)
        for kind in PUSH_RULE_KINDS:
            for rule in list(ruleset.get(kind, [])):
                if rule.get("default"):
                    continue
                rule_id = str(rule.get("rule_id", ""))
                conditions = rule.get("conditions") or []
                about_room = (kind == "room" and rule_id == old_room_id) or any(
                    isinstance(cond, Mapping)
                    and cond.get("key") == "room_id"
                    and cond.get("pattern") == old_room_id
                    for cond in conditions
                )
                if not about_room or old_room_id not in rule_id:
                    continue
                new_rule: dict[str, Any] = {"actions": rule.get("actions", [])}
                if kind != "room":
                    new_rule["conditions"] = [
                        {**cond, "pattern": new_room_id}
                        if isinstance(cond, Mapping) and cond.get("key") == "room_id"
                        else cond
                        for cond in conditions
                    ]
                new_rule_id = rule_id.replace(old_room_id, new_room_id)
                await self.push_rules.set_rule(user_id, kind, new_rule_id, new_rule)
                if rule.get("enabled") is False:
                    await self.push_rules.set_enabled(user_id, kind, new_rule_id, False)
