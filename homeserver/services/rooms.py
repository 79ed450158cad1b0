"""Room creation (createRoom) with presets, initial state and invites as one atomic unit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.events import constants as c
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, get_room_version
from homeserver.persist.persister import EventDraft, EventPersister
from homeserver.services.audit import AuditLog
from homeserver.services.membership import MembershipService
from homeserver.services.room_presets import PRESETS, default_power_levels
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.users import UserStore


class RoomService:
    def __init__(
        self,
        persister: EventPersister,
        rooms: RoomStore,
        users: UserStore,
        membership: MembershipService,
        clock: Any,
        *,
        server_name: str,
        default_room_version: str = DEFAULT_ROOM_VERSION,
        may_publish: Any = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.audit = audit
        self.persister = persister
        self.rooms = rooms
        self.users = users
        self.membership = membership
        self.clock = clock
        self.server_name = server_name
        self.default_room_version = default_room_version
        # (user_id, room_id, aliases) -> bool; the directory publication rules.
        self.may_publish = may_publish
        # Policy checks on a valid createRoom body (room-creation policy, word filter); each may
        # raise MatrixError to refuse the room.
        self.creation_checks: list[Callable[[str, dict[str, Any]], Awaitable[None]]] = []

    async def create_room(self, creator: str, body: dict[str, Any]) -> tuple[str, str | None]:
        """Returns (room_id, room_alias)."""
        version_id = body.get("room_version", self.default_room_version)
        if not isinstance(version_id, str):
            raise MatrixError(400, "M_BAD_JSON", "'room_version' must be a string")
        version = get_room_version(version_id)
        if version is None or version.room_ids_as_hashes:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {version_id}")

        visibility = body.get("visibility", "private")
        if visibility not in ("public", "private"):
            raise MatrixError(400, "M_BAD_JSON", "'visibility' must be public or private")
        preset_name = body.get("preset") or ("public_chat" if visibility == "public" else "private_chat")
        preset = PRESETS.get(preset_name) if isinstance(preset_name, str) else None
        if preset is None:
            raise MatrixError(400, "M_BAD_JSON", f"Unknown preset {preset_name!r}")

        invites = body.get("invite", [])
        if not isinstance(invites, list) or not all(isinstance(u, str) for u in invites):
            raise MatrixError(400, "M_BAD_JSON", "'invite' must be a list of user ids")
        for user_id in invites:
            if not ids.is_valid_user_id(user_id):
                raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user id {user_id!r}")
        if body.get("invite_3pid"):
            raise MatrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported")
        is_direct = body.get("is_direct", False)
        if not isinstance(is_direct, bool):
            raise MatrixError(400, "M_BAD_JSON", "'is_direct' must be a boolean")

        creation_content = body.get("creation_content") or {}
        initial_state = body.get("initial_state") or []
        pl_override = body.get("power_level_content_override")
        if not isinstance(creation_content, dict):
            raise MatrixError(400, "M_BAD_JSON", "'creation_content' must be an object")
        if not isinstance(initial_state, list) or not all(
            isinstance(s, dict) and isinstance(s.get("type"), str) and isinstance(s.get("content", {}), dict)
            for s in initial_state
        ):
            raise MatrixError(400, "M_BAD_JSON", "'initial_state' must be a list of state events")
        if pl_override is not None and not isinstance(pl_override, dict):
            raise MatrixError(400, "M_BAD_JSON", "'power_level_content_override' must be an object")
        for key in ("name", "topic"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise MatrixError(400, "M_BAD_JSON", f"'{key}' must be a string")

        for check in self.creation_checks:
            await check(creator, body)

        room_id = ids.new_room_id(self.server_name)
        alias = None
        alias_localpart = body.get("room_alias_name")
        if alias_localpart is not None:
            if not isinstance(alias_localpart, str) or not alias_localpart or ":" in alias_localpart:
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid room_alias_name")
            alias = f"#{alias_localpart}:{self.server_name}"
            if not ids.is_valid_room_alias(alias):
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid room_alias_name")
            if await self.rooms.get_alias(alias) is not None:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")

        def draft(type: str, content: dict[str, Any], state_key: str | None = "") -> EventDraft:
            return EventDraft(room_id, type, creator, content, state_key)

        create_content = {k: v for k, v in creation_content.items() if k != "creator"}
        create_content["room_version"] = version.identifier
        if not version.implicit_room_creator:
            create_content["creator"] = creator
        member_content = await self.membership.member_content(creator, c.JOIN)
        power_levels = default_power_levels(creator, invites, preset["invitees_are_admins"])
        if pl_override:
            power_levels.update(pl_override)

        drafts = [
            draft(c.CREATE, create_content),
            draft(c.MEMBER, member_content, creator),
            draft(c.POWER_LEVELS, power_levels),
        ]
        if alias is not None:
            drafts.append(draft("m.room.canonical_alias", {"alias": alias}))
        preset_state = {
            (c.JOIN_RULES, ""): {"join_rule": preset["join_rule"]},
            (c.HISTORY_VISIBILITY, ""): {"history_visibility": preset["history_visibility"]},
            ("m.room.guest_access", ""): {"guest_access": preset["guest_access"]},
        }
        initial = {(s["type"], s.get("state_key", "")): s.get("content", {}) for s in initial_state}
        for preset_key, preset_content in preset_state.items():
            if preset_key not in initial:
                drafts.append(draft(preset_key[0], preset_content, preset_key[1]))
        for (etype, state_key), content in initial.items():
            if etype in (c.CREATE, c.MEMBER, c.POWER_LEVELS):
                raise MatrixError(400, "M_BAD_JSON", f"{etype} cannot be set in initial_state")
            drafts.append(draft(etype, content, state_key))
        if body.get("name") is not None:
            drafts.append(draft("m.room.name", {"name": body["name"]}))
        if body.get("topic") is not None:
            drafts.append(draft("m.room.topic", {"topic": body["topic"]}))

        persisted = await self.persister.send(drafts, new_room_version=version)
        if alias is not None:
            await self.rooms.insert_alias(alias, room_id, creator, self.clock.time_ms())
        if visibility == "public" and (self.may_publish is None or self.may_publish(creator, room_id, alias)):
            await self.rooms.set_public(room_id, True)
        del persisted

        for user_id in invites:
            await self.membership.invite(creator, room_id, user_id, is_direct=is_direct)
        if self.audit is not None:
            await self.audit.record(
                "room.create",
                actor=creator,
                target=room_id,
                detail={"room_version": version.identifier, "preset": preset_name, "visibility": visibility},
            )
        return room_id, alias
