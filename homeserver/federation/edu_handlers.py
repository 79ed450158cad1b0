"""Inbound EDUs of the spec's types, registered on the `EduRegistry` that PUT /send dispatches to.

Each handler checks what the spec and Synapse check before handing the data to the service that
owns it (the same entry points as local data, so /sync sees remote and local alike):

- every user named must belong to the sending server (anything else is dropped, with a log line);
- `m.typing` and `m.receipt` are ignored for a room whose `m.room.server_acl` denies the origin,
  and only apply to users joined to the room;
- `m.presence` is kept only for users who share a room with a local user;
- `m.direct_to_device` is delivered once per (origin, message_id);
- `m.device_list_update` and `m.signing_key_update` go to `RemoteDeviceLists`.

Malformed content is dropped (the registry logs a handler's failure and never fails /send).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeGuard

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.federation.acl import server_allowed
from homeserver.federation.edus import EduHandler, EduRegistry
from homeserver.federation.remote_devices import RemoteDeviceLists
from homeserver.services.presence import STATES, PresenceService
from homeserver.services.receipts import ReceiptService
from homeserver.services.to_device import ToDeviceService
from homeserver.services.typing import TypingService
from homeserver.state.current import CurrentStateCache
from homeserver.storage.database import Connection
from homeserver.storage.stores.remote_devices import RemoteDeviceStore

logger = logging.getLogger(__name__)

SERVER_ACL = "m.room.server_acl"
MAX_MESSAGE_ID_LENGTH = 255  # the spec says 32 codepoints; Synapse does not enforce it
MESSAGE_ID_LIFETIME_MS = 24 * 3600 * 1000
MAX_PRESENCE_PUSH = 1000


def _user_of(origin: str, user_id: Any) -> TypeGuard[str]:
    """`user_id` is a valid user id of the server `origin`."""
    return isinstance(user_id, str) and ids.is_valid_user_id(user_id) and ids.server_of(user_id) == origin


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class FederationEduHandlers:
    def __init__(
        self,
        state: CurrentStateCache,
        typing: TypingService,
        receipts: ReceiptService,
        presence: PresenceService,
        to_device: ToDeviceService,
        remote_devices: RemoteDeviceLists,
        remote_store: RemoteDeviceStore,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self.server_name = server_name
        self.state = state
        self.typing = typing
        self.receipts = receipts
        self.presence = presence
        self.to_device = to_device
        self.remote_devices = remote_devices
        self.remote_store = remote_store
        self.clock = clock
        self._last_cleanup = 0

    def register(self, registry: EduRegistry) -> None:
        handlers: dict[str, EduHandler] = {
            "m.typing": self.on_typing,
            "m.receipt": self.on_receipt,
            "m.presence": self.on_presence,
            "m.direct_to_device": self.on_direct_to_device,
            "m.device_list_update": self.remote_devices.on_device_list_update,
            "m.signing_key_update": self.remote_devices.on_signing_key_update,
        }
        for edu_type, handler in handlers.items():
            registry.register(edu_type, self._from_others(edu_type, handler))

    def _from_others(self, edu_type: str, handler: EduHandler) -> EduHandler:
        """Never take our own users' data from outside (an origin naming this server)."""

        async def guarded(origin: str, content: Mapping[str, Any]) -> None:
            if origin == self.server_name:
                logger.warning("ignoring a %s EDU that claims to come from this server", edu_type)
                return
            await handler(origin, content)

        return guarded

    async def _room_allows(self, origin: str, room_id: str) -> bool:
        """A room we know whose server ACL lets `origin` in."""
        if not ids.is_valid_room_id(room_id):
            return False
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            return False
        acl = snapshot.get(SERVER_ACL)
        return server_allowed(origin, acl.content if acl is not None else None)

    # -- m.typing ------------------------------------------------------------------------------------

    async def on_typing(self, origin: str, content: Mapping[str, Any]) -> None:
        room_id, user_id, typing = content.get("room_id"), content.get("user_id"), content.get("typing")
        if not isinstance(user_id, str) or not _user_of(origin, user_id) or not isinstance(typing, bool):
            logger.info("ignoring m.typing from %s: bad user_id or typing", origin)
            return
        if not isinstance(room_id, str) or not await self._room_allows(origin, room_id):
            logger.info(
                "ignoring m.typing from %s for room %r: unknown room or denied by ACL", origin, room_id
            )
            return
        if not await self.typing.receive_remote(room_id, user_id, typing):
            logger.info("ignoring m.typing of %s in %s: not joined", user_id, room_id)

    # -- m.receipt -----------------------------------------------------------------------------------

    async def on_receipt(self, origin: str, content: Mapping[str, Any]) -> None:
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict):
                continue
            if not await self._room_allows(origin, room_id):
                logger.info(
                    "ignoring receipts from %s for room %r: unknown room or denied by ACL", origin, room_id
                )
                continue
            # only read receipts travel between servers (private ones never leave their server)
            users = by_type.get("m.read")
            if not isinstance(users, dict):
                continue
            for user_id, receipt in users.items():
                await self._one_receipt(origin, room_id, user_id, receipt)

    async def _one_receipt(self, origin: str, room_id: str, user_id: str, receipt: Any) -> None:
        if not _user_of(origin, user_id) or not isinstance(receipt, dict):
            logger.info("ignoring a receipt from %s: %r is not one of its users", origin, user_id)
            return
        event_ids, data = receipt.get("event_ids"), receipt.get("data")
        if not isinstance(event_ids, list) or not event_ids or not isinstance(event_ids[0], str):
            return
        if not isinstance(data, dict):
            return
        ts = data.get("ts")
        thread_id = data.get("thread_id")
        if thread_id is not None and (not isinstance(thread_id, str) or not thread_id):
            return
        now = self.clock.time_ms()
        ts = ts if _is_int(ts) and 0 <= ts <= now else now
        if not await self.receipts.receive_remote(user_id, room_id, event_ids[0], thread_id, ts):
            logger.info("ignoring the receipt of %s in %s: not joined or unknown event", user_id, room_id)

    # -- m.presence ----------------------------------------------------------------------------------

    async def on_presence(self, origin: str, content: Mapping[str, Any]) -> None:
        push = content.get("push")
        if not isinstance(push, list):
            return
        for update in push[:MAX_PRESENCE_PUSH]:
            if not isinstance(update, dict) or not _user_of(origin, update.get("user_id")):
                continue
            user_id, state = update["user_id"], update.get("presence")
            ago, status_msg = update.get("last_active_ago", 0), update.get("status_msg")
            active = update.get("currently_active", False)
            if state not in STATES or not _is_int(ago) or not isinstance(active, bool):
                continue
            if status_msg is not None and not isinstance(status_msg, str):
                continue
            if not await self.remote_devices.shares_room(user_id):
                continue  # nobody here may see it
            await self.presence.receive_remote(user_id, state, status_msg, ago, active)

    # -- m.direct_to_device --------------------------------------------------------------------------

    async def on_direct_to_device(self, origin: str, content: Mapping[str, Any]) -> None:
        sender, event_type = content.get("sender"), content.get("type")
        message_id, messages = content.get("message_id"), content.get("messages")
        if not isinstance(sender, str) or not _user_of(origin, sender):
            logger.info(
                "ignoring m.direct_to_device from %s: sender %r is not one of its users", origin, sender
            )
            return
        if not isinstance(event_type, str) or not event_type or not isinstance(messages, dict):
            return
        if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH:
            return
        now = self.clock.time_ms()

        async def claim(conn: Connection) -> bool:
            return await self.remote_store.claim_to_device_id_txn(conn, origin, message_id, now)

        await self.to_device.receive_remote(sender, event_type, messages, claim)
        if now - self._last_cleanup >= 3600 * 1000:
            self._last_cleanup = now
            await self.remote_store.delete_to_device_ids_before(now - MESSAGE_ID_LIFETIME_MS)
