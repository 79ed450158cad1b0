"""The resident side of the membership handshakes: make_join/send_join (v2, with omit_members),
make_leave/send_leave (v2), make_knock/send_knock, and invites of our users (invite v2).

A remote server asks for a template (`make_*`), signs the event and sends it back (`send_*`); we
check it (format, signatures and content hash through `pdu_checks.check_pdu`, the shape the spec
requires, the auth rules against its auth events and against the current state), persist it
through the one persister as a REMOTE_NEW event and answer with what the joiner needs (the state
before the join and its auth chain; the stripped state for a knock). For restricted rooms we, as
the resident server, pick a local user who may invite, name them in
`join_authorised_via_users_server` and countersign the join.

An invite of one of our users is checked, countersigned and stored as an out-of-band outlier (the
user's membership, shown in /sync `invite` with the stripped state it came with) unless one of our
users is already in the room: then the invite reaches us again as a regular PDU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.crypto.event_signing import sign_event
from homeserver.crypto.keyring import Keyring
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events import constants as c
from homeserver.events.auth import AuthError, auth_types_for_event, get_named_level, user_power_level
from homeserver.events.context import EventContext, EventKind, StateIds
from homeserver.events.event import Event
from homeserver.events.validation import validate_pdu_format
from homeserver.federation.acl import check_server_acl
from homeserver.federation.pdu_checks import PduSignatureError, check_pdu
from homeserver.federation.room_events import (
    OwnKeyFirst,
    auth_against,
    auth_against_state,
    check_membership_shape,
    invalid,
    room_version_or_error,
)
from homeserver.persist.persister import EventPersister
from homeserver.services.membership import stripped_state
from homeserver.state.current import RoomSnapshot
from homeserver.state.resolution import merge_unconflicted
from homeserver.state.service import StateService
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.state import StateStore
from homeserver.storage.stores.users import UserStore

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]
SERVER_ACL = "m.room.server_acl"
MAX_HEROES = 5


def federation_pdu(event: Event) -> dict[str, Any]:
    """An event as sent to other servers: the PDU without our local `unsigned` data."""
    return {k: v for k, v in event.pdu.items() if k != "unsigned"}


def servers_in(snapshot_state: Mapping[StateKey, Event]) -> list[str]:
    return sorted(
        {
            ids.server_of(k[1])
            for k, e in snapshot_state.items()
            if k[0] == c.MEMBER and e.content.get("membership") == c.JOIN
        }
    )


class MembershipServer:
    def __init__(
        self,
        state: StateService,
        events: EventStore,
        groups: StateStore,
        users: UserStore,
        persister: EventPersister,
        clock: Clock,
        *,
        server_name: str,
        signing_key: ServerSigningKey,
        keyring: Callable[[], Keyring],
    ) -> None:
        self.state = state
        self.events = events
        self.groups = groups
        self.users = users
        self.persister = persister
        self.clock = clock
        self.server_name = server_name
        self.signing_key = signing_key
        self._keyring = keyring
        self._suffix = ":" + server_name

    def keyring(self) -> OwnKeyFirst:
        return OwnKeyFirst(self._keyring(), self.server_name, self.signing_key)

    # -- helpers ---------------------------------------------------------------------------------

    def _has_local_members(self, snapshot: RoomSnapshot) -> bool:
        return any(u.endswith(self._suffix) and m == c.JOIN for u, m in snapshot.memberships.items())

    async def _resident_room(self, origin: str, room_id: str) -> RoomSnapshot:
        """The room, which we must be in (else 404 as Synapse), and the origin must pass its ACL."""
        if not ids.is_valid_room_id(room_id):
            raise invalid("Invalid room id")
        snapshot = await self.state.get(room_id)
        if snapshot is None or not self._has_local_members(snapshot):
            raise not_found("Unknown room")
        acl = snapshot.get(SERVER_ACL)
        check_server_acl(origin, acl.content if acl is not None else None)
        return snapshot

    async def _check_pdu(self, pdu: Mapping[str, Any], snapshot_version: Any) -> Event:
        try:
            return await check_pdu(pdu, snapshot_version, self.keyring())
        except PduSignatureError as exc:
            # The spec asks for M_INVALID_PARAM when the event fails its signature check.
            raise invalid(exc.error) from exc

    # -- make_join / make_leave / make_knock -----------------------------------------------------

    async def make_membership(
        self, origin: str, room_id: str, user_id: str, membership: str, versions: Sequence[str] | None
    ) -> dict[str, Any]:
        """A template member event for `user_id` of the origin server (make_join/leave/knock)."""
        if not ids.is_valid_user_id(user_id) or ids.server_of(user_id) != origin:
            raise forbidden("The user is not a user of the requesting server")
        snapshot = await self._resident_room(origin, room_id)
        version = snapshot.version
        if membership in (c.JOIN, c.KNOCK) and version.identifier not in (versions or ["1"]):
            raise MatrixError(
                400,
                "M_INCOMPATIBLE_ROOM_VERSION",
                "Your homeserver does not support the features required to interact with this room",
                room_version=version.identifier,
            )
        if membership == c.KNOCK and not version.knock_join_rule:
            raise forbidden("This room version does not support knocking")
        content: dict[str, Any] = {"membership": membership}
        if membership == c.JOIN:
            authoriser = await self._join_authoriser(snapshot, user_id)
            if authoriser is not None:
                content[c.AUTHORISING_USER] = authoriser
        keys = auth_types_for_event(
            version, type=c.MEMBER, sender=user_id, state_key=user_id, content=content
        )
        template: dict[str, Any] = {
            "room_id": room_id,
            "sender": user_id,
            "state_key": user_id,
            "type": c.MEMBER,
            "content": content,
            "origin": self.server_name,
            "origin_server_ts": self.clock.time_ms(),
            "depth": min(snapshot.depth + 1, version.max_depth),
            "prev_events": list(snapshot.extremities),
            "auth_events": [snapshot.state[k].event_id for k in keys if k in snapshot.state],
        }
        # Refuse now what the auth rules would refuse at send_* (not invited, banned, ...).
        try:
            auth_against_state(version, Event(dict(template), version, "$template"), snapshot.state)
        except AuthError as exc:
            raise forbidden(exc.reason) from exc
        return {"room_version": version.identifier, "event": template}

    async def _join_authoriser(self, snapshot: RoomSnapshot, user_id: str) -> str | None:
        """For a restricted room: a local user who may invite, vouching for a joiner who is in one
        of the allowed rooms (None when no authoriser is needed)."""
        version = snapshot.version
        rules = snapshot.content_of(c.JOIN_RULES)
        rule = rules.get("join_rule")
        restricted = (rule == c.RESTRICTED and version.restricted_join_rule) or (
            rule == c.KNOCK_RESTRICTED and version.knock_restricted_join_rule
        )
        if not restricted or snapshot.membership(user_id) in (c.JOIN, c.INVITE):
            return None
        allow = rules.get("allow")
        allowed_rooms = [
            a["room_id"]
            for a in (allow if isinstance(allow, list) else [])
            if isinstance(a, Mapping)
            and a.get("type") == "m.room_membership"
            and isinstance(a.get("room_id"), str)
        ]
        known = False
        for allowed in allowed_rooms:
            other = await self.state.get(allowed)
            if other is None or not self._has_local_members(other):
                continue
            known = True
            if other.membership(user_id) == c.JOIN:
                break
        else:
            if not known:
                raise MatrixError(
                    400, "M_UNABLE_TO_AUTHORISE_JOIN", "This server cannot check the room's join conditions"
                )
            raise forbidden("You do not belong to any of the rooms this room is restricted to")
        invite_level = get_named_level("invite", snapshot.content_of(c.POWER_LEVELS) or None)
        candidates = sorted(
            (
                (user_power_level(u, snapshot.state), u)
                for u, m in snapshot.memberships.items()
                if m == c.JOIN and u.endswith(self._suffix)
            ),
            key=lambda pu: (-pu[0], pu[1]),
        )
        for level, candidate in candidates:
            if level >= invite_level:
                return candidate
        raise MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No user here may authorise this join")

    # -- send_join / send_leave / send_knock -----------------------------------------------------

    async def send_membership(
        self,
        origin: str,
        room_id: str,
        event_id: str,
        pdu: Any,
        membership: str,
        *,
        omit_members: bool = False,
    ) -> dict[str, Any]:
        if not isinstance(pdu, dict):
            raise bad_json("The body must be an event")
        snapshot = await self._resident_room(origin, room_id)
        version = snapshot.version
        pdu = {k: v for k, v in pdu.items() if k != "unsigned"}
        validate_pdu_format(pdu, version)
        content = pdu.get("content")
        authoriser = content.get(c.AUTHORISING_USER) if isinstance(content, Mapping) else None
        countersigned = False
        if (
            membership == c.JOIN
            and version.restricted_join_rule
            and isinstance(authoriser, str)
            and ids.server_of(authoriser) == self.server_name
        ):
            # We vouch for this join (the auth rules check that the authoriser may): sign first,
            # then every required signature is checked alike.
            pdu = sign_event(version, pdu, self.server_name, self.signing_key)
            countersigned = True
        event = await self._check_pdu(pdu, version)
        check_membership_shape(
            event, room_id=room_id, event_id=event_id, membership=membership, origin=origin
        )
        if countersigned:
            await self._join_authoriser(snapshot, event.sender)  # the joiner still qualifies

        known = await self.events.get_event(event.event_id)
        if known is None:
            state_before, group = await self._state_before(snapshot, event)
            await self._authorise(snapshot, event)
            context = EventContext(event, EventKind.REMOTE_NEW, state_before, state_group_before=group)
            await self.persister.persist([context])
        elif known.outlier or known.event.type != c.MEMBER:
            raise forbidden("The event is already known")
        if membership == c.KNOCK:
            return {"knock_room_state": stripped_state(snapshot)}
        if membership == c.LEAVE:
            return {}
        response = await self._join_response(event, omit_members)
        if countersigned:
            response["event"] = federation_pdu(event)
        return response

    async def _authorise(self, snapshot: RoomSnapshot, event: Event) -> None:
        """Auth rules against the event's own auth events, then against the current state."""
        found = await self.events.get_events(event.auth_event_ids)
        missing = [a for a in event.auth_event_ids if a not in found]
        if missing:
            raise forbidden(f"Unknown auth events: {', '.join(missing)}")
        create = snapshot.get(c.CREATE)
        try:
            auth_against(
                snapshot.version,
                event,
                [s.event for s in found.values()],
                create_event=create,
            )
            auth_against_state(snapshot.version, event, snapshot.state)
        except AuthError as exc:
            raise forbidden(exc.reason) from exc

    async def _state_before(
        self, snapshot: RoomSnapshot, event: Event
    ) -> tuple[Mapping[StateKey, str], int | None]:
        """The state before a received member event, from its prev_events (the current state with
        its group in the common case: the template's prev_events are still our extremities)."""
        prevs = event.prev_event_ids
        if snapshot.forks is None and set(prevs) == set(snapshot.extremities):
            return StateIds(snapshot.state), snapshot.state_group
        sets = []
        for prev in prevs:
            after = await self.state.state_ids_at_event(prev)
            if after is None:
                raise forbidden(f"Unknown prev event {prev}")
            sets.append(after)
        if not sets:
            raise invalid("The event has no prev_events")
        merged = merge_unconflicted(sets)
        if merged is None:
            merged = await self.persister.resolver.resolve(
                snapshot.version, snapshot.room_id, sets, self._lookup
            )
        return merged, None

    async def _lookup(self, event_ids: Sequence[str]) -> dict[str, Event]:
        return {k: v.event for k, v in (await self.events.get_events(event_ids)).items()}

    async def _join_response(self, event: Event, omit_members: bool) -> dict[str, Any]:
        """The state before the join, its auth chain (send_join v2; MSC3706 with omit_members)."""
        state_ids = await self.state.state_ids_at_event(event.event_id, before=True) or {}
        state = await self._lookup(list(state_ids.values()))
        returned = dict(state_ids)
        response: dict[str, Any] = {"origin": self.server_name, "members_omitted": False}
        if omit_members:
            by_key = {k: state[v] for k, v in state_ids.items() if v in state}
            keep = set()
            if ("m.room.name", "") not in by_key and ("m.room.canonical_alias", "") not in by_key:
                keep = set(_heroes(by_key, event.sender))
            returned = {k: v for k, v in state_ids.items() if k[0] != c.MEMBER or k[1] in keep}
            response["members_omitted"] = True
            response["servers_in_room"] = servers_in(by_key)
        chain = await self.groups.auth_chain_ids([event.event_id, *returned.values()])
        if omit_members:
            chain -= set(returned.values())
        chain_events = await self._lookup(sorted(chain))
        response["state"] = [federation_pdu(state[v]) for v in returned.values() if v in state]
        response["auth_chain"] = [
            federation_pdu(e) for e in sorted(chain_events.values(), key=lambda e: (e.depth, e.event_id))
        ]
        return response

    # -- invites of our users --------------------------------------------------------------------

    async def on_invite(self, origin: str, room_id: str, event_id: str, body: Any) -> dict[str, Any]:
        """PUT /v2/invite: check the invite of one of our users, countersign it, store it."""
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            raise bad_json("Expected {room_version, event, invite_room_state}")
        version = room_version_or_error(body.get("room_version"))
        if not ids.is_valid_room_id(room_id):
            raise invalid("Invalid room id")
        stripped = body.get("invite_room_state", [])
        if not isinstance(stripped, list):
            raise bad_json("invite_room_state must be a list")
        stripped = [s for s in stripped if isinstance(s, dict)]
        pdu = {k: v for k, v in body["event"].items() if k != "unsigned"}
        event = await self._check_pdu(pdu, version)
        check_membership_shape(event, room_id=room_id, event_id=event_id, membership=c.INVITE, origin=origin)
        target = event.state_key or ""
        if not ids.is_valid_user_id(target) or ids.server_of(target) != self.server_name:
            raise invalid("The invite is not for a user of this server")
        user = await self.users.get_user(target)
        if user is None or user.deactivated:
            raise not_found("Unknown user")
        snapshot = await self.state.get(room_id)
        if snapshot is not None and snapshot.state:
            if snapshot.version.identifier != version.identifier:
                raise invalid("The room version does not match the room's")
            acl = snapshot.get(SERVER_ACL)
            check_server_acl(origin, acl.content if acl is not None else None)
            if snapshot.membership(target) in (c.JOIN, c.BAN):
                raise forbidden(f"{target} cannot be invited to this room")
        signed = sign_event(version, pdu, self.server_name, self.signing_key)
        if snapshot is None or not self._has_local_members(snapshot):
            if await self.events.get_event(event.event_id) is None:
                stored = Event(
                    {**signed, "unsigned": {"invite_room_state": stripped}}, version, event.event_id
                )
                context = EventContext(stored, EventKind.OUTLIER, {}, out_of_band_membership=True)
                await self.persister.persist_remote_room(version, _creator(stripped, event), [context])
        return {"event": signed}


def _creator(stripped: Sequence[Mapping[str, Any]], event: Event) -> str:
    for s in stripped:
        if s.get("type") == c.CREATE and isinstance(s.get("sender"), str):
            return str(s["sender"])
    return event.sender


def _heroes(state: Mapping[StateKey, Event], joiner: str) -> list[str]:
    members = sorted(
        k[1]
        for k, e in state.items()
        if k[0] == c.MEMBER and k[1] != joiner and e.content.get("membership") in (c.JOIN, c.INVITE)
    )
    return members[:MAX_HEROES]
