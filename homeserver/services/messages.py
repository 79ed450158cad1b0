"""Sending events: txn-id idempotency, state updates, redactions.

A retried `PUT /send/{type}/{txnId}` returns the first event id and creates nothing: completed sends
are found in event_txn_ids, and a retry racing the first attempt joins the in-flight future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events import constants as c
from homeserver.events.auth import get_named_level, get_power_levels_content, user_power_level
from homeserver.persist.persister import EventDraft, EventPersister, PersistedEvent
from homeserver.services.restrictions import UserRestrictions, fake_event_id
from homeserver.state.current import CurrentStateCache, RoomSnapshot
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.rooms import RoomStore

# (user_id, device_id, room_id, event_type, txn_id): the scope of the request path
TxnKey = tuple[str, str, str, str, str]
# A content check run before persisting (word filter, spam checks); raises MatrixError to refuse.
ContentCheck = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]


class MessageService:
    def __init__(
        self,
        persister: EventPersister,
        state: CurrentStateCache,
        events: EventStore,
        rooms: RoomStore,
        *,
        server_name: str,
        restrictions: UserRestrictions | None = None,
    ) -> None:
        self.persister = persister
        # Suspended users may not send; shadow-banned users' sends are faked (services/restrictions).
        self.restrictions = restrictions
        self.state = state
        self.events = events
        self.rooms = rooms
        self.server_name = server_name
        self._in_flight: dict[TxnKey, asyncio.Future[str]] = {}
        self.content_checks: list[ContentCheck] = []

    async def _room(self, room_id: str) -> RoomSnapshot:
        ids.check_room_id(room_id)
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            raise forbidden(f"Unknown room {room_id}")  # as for a room the user is not in
        return snapshot

    async def _idempotent(self, key: TxnKey | None, create: Callable[[], Awaitable[PersistedEvent]]) -> str:
        if key is None:
            return (await create()).event.event_id
        # Register before the first await: a retry racing this request must find it here, since
        # the stored txn row only appears once the event commits.
        pending = self._in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = fut
        try:
            existing = await self.events.get_txn_event_id(*key)
            event_id = existing if existing is not None else (await create()).event.event_id
            fut.set_result(event_id)
            return event_id
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: a retry may never come
            raise
        finally:
            del self._in_flight[key]

    @staticmethod
    def _require_joined(user_id: str) -> Callable[[RoomSnapshot], None]:
        def check(snapshot: RoomSnapshot) -> None:
            if snapshot.membership(user_id) != c.JOIN:
                raise forbidden(f"User {user_id} not in room {snapshot.room_id}")

        return check

    async def _run_checks(self, user_id: str, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        for check in self.content_checks:
            await check(user_id, room_id, event_type, content)

    async def send_message(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        txn_id: str | None,
        ts: int | None = None,
    ) -> str:
        snapshot = await self._room(room_id)
        if snapshot.membership(user_id) != c.JOIN:
            raise forbidden(f"User {user_id} not in room {room_id}")
        if self.restrictions is not None and await self.restrictions.gate_send(user_id):
            return fake_event_id()
        if event_type == c.REDACTION:
            redacts = content.get("redacts")
            if not isinstance(redacts, str):
                raise MatrixError(400, "M_BAD_JSON", "m.room.redaction needs content.redacts")
            return await self.redact(user_id, device_id, room_id, redacts, content, txn_id)
        await self._check_relation(user_id, room_id, event_type, content)
        await self._run_checks(user_id, room_id, event_type, content)
        key = (user_id, device_id or "", room_id, event_type, txn_id) if txn_id is not None else None
        draft = EventDraft(
            room_id,
            event_type,
            user_id,
            content,
            txn=(user_id, device_id or "", txn_id) if txn_id is not None else None,
            precondition=self._require_joined(user_id),
            origin_server_ts=ts,
        )
        return await self._idempotent(key, lambda: self.persister.send_one(draft))

    async def _check_relation(
        self, user_id: str, room_id: str, event_type: str, content: dict[str, Any]
    ) -> None:
        """The relation rules servers enforce: one identical annotation per sender (spec: event
        annotations), and no thread rooted at an event that itself relates to another."""
        relates = content.get("m.relates_to")
        if not isinstance(relates, dict):
            return
        rel_type = relates.get("rel_type")
        target_id = relates.get("event_id")
        if not isinstance(target_id, str):
            return
        if rel_type == "m.annotation" and event_type != "m.room.encrypted":
            key = relates.get("key")
            for existing in await self.events.list_relations_by_sender(target_id, "m.annotation", user_id):
                other = existing.event.content.get("m.relates_to")
                if isinstance(other, dict) and other.get("key") == key and existing.event.type == event_type:
                    raise MatrixError(400, "M_DUPLICATE_ANNOTATION", "Can't send same reaction twice")
        elif rel_type == "m.thread":
            target = await self.events.get_event(target_id)
            if target is not None and target.event.room_id == room_id:
                parent_rel = target.event.content.get("m.relates_to")
                if isinstance(parent_rel, dict) and isinstance(parent_rel.get("rel_type"), str):
                    raise MatrixError(400, "M_UNKNOWN", "Cannot start threads from an event with a relation")

    async def send_state(
        self,
        user_id: str,
        room_id: str,
        event_type: str,
        state_key: str,
        content: dict[str, Any],
        ts: int | None = None,
    ) -> str:
        snapshot = await self._room(room_id)
        if event_type == c.MEMBER:
            raise MatrixError(400, "M_BAD_JSON", "Use the membership endpoints to change membership")
        current = snapshot.get(event_type, state_key)
        if snapshot.membership(user_id) != c.JOIN:
            raise forbidden(f"User {user_id} not in room {room_id}")
        if self.restrictions is not None and await self.restrictions.gate_send(user_id):
            return fake_event_id()
        if current is not None and dict(current.content) == content and current.sender == user_id:
            return current.event_id  # identical state: no new event, as Synapse does
        if event_type == "m.room.canonical_alias":
            await self._check_canonical_alias(room_id, content)
        await self._run_checks(user_id, room_id, event_type, content)
        draft = EventDraft(room_id, event_type, user_id, content, state_key, origin_server_ts=ts)
        return (await self.persister.send_one(draft)).event.event_id

    async def _check_canonical_alias(self, room_id: str, content: dict[str, Any]) -> None:
        aliases = []
        alias = content.get("alias")
        if alias is not None:
            aliases.append(alias)
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list):
            raise MatrixError(400, "M_INVALID_PARAM", "alt_aliases must be a list")
        aliases.extend(alt)
        for value in aliases:
            if not isinstance(value, str) or not ids.is_valid_room_alias(value):
                raise MatrixError(400, "M_INVALID_PARAM", f"Invalid alias {value!r}")
            if ids.server_of(value) == self.server_name:
                found = await self.rooms.get_alias(value)
                if found is None or found[0] != room_id:
                    raise MatrixError(400, "M_BAD_ALIAS", f"Alias {value} does not point to this room")

    async def redact(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        target_id: str,
        content: dict[str, Any],
        txn_id: str | None,
    ) -> str:
        snapshot = await self._room(room_id)
        target = await self.events.get_event(target_id)
        if target is None or target.event.room_id != room_id:
            raise not_found("Event not found")
        if self.restrictions is not None:
            # As Synapse: a suspended user may still redact their own events (cleaning up).
            own = target.event.sender == user_id
            if own and await self.restrictions.is_shadow_banned(user_id):
                return fake_event_id()
            if not own and await self.restrictions.gate_send(user_id):
                return fake_event_id()
        if target.event.sender != user_id:
            # Others' events need the redact level (the spec's same-server rule is for federation).
            level = get_named_level("redact", get_power_levels_content(snapshot.state))
            if user_power_level(user_id, snapshot.state) < level:
                raise forbidden("You are not allowed to redact this event")
        key = (user_id, device_id or "", room_id, c.REDACTION, txn_id) if txn_id is not None else None
        body = {k: v for k, v in content.items() if k != "redacts"}
        draft = EventDraft(
            room_id,
            c.REDACTION,
            user_id,
            body,
            redacts=target_id,
            txn=(user_id, device_id or "", txn_id) if txn_id is not None else None,
            precondition=self._require_joined(user_id),
        )
        return await self._idempotent(key, lambda: self.persister.send_one(draft))
