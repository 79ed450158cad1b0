"""Outbound EDUs generated from local changes.

- typing (m.typing) and read receipts (m.receipt) to the servers in the room, presence
  (m.presence) to the servers sharing a room with the user: from the TYPING / RECEIPTS /
  PRESENCE streams, ephemeral (kept in memory, the latest per user and room replaces the last).
- device-list changes (m.device_list_update, one per device, with `stream_id` and `prev_id`
  chained per destination and user) and cross-signing key changes (m.signing_key_update): from
  the DEVICE_LISTS stream, followed from a persisted position like the events stream, persisted.
- to-device messages for remote users (m.direct_to_device) are queued by services/to_device.py
  itself, inside its own transaction (`FederationSender.queue_edu_txn`).
Only changes of local users go out: the same streams also carry what other servers told us.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import DatabaseUnavailableError
from homeserver.core.ids import server_of
from homeserver.core.streams import (
    DeviceListsRow,
    EventsRow,
    PresenceStreamRow,
    ReceiptRow,
    Stream,
    StreamRow,
    TypingRow,
)
from homeserver.events.constants import JOIN
from homeserver.federation.sender.destinations import DestinationResolver
from homeserver.federation.sender.sender import FederationSender
from homeserver.federation.sender.stream import StreamFollower, Writer
from homeserver.replication.bus import StreamBus
from homeserver.services.e2e_keys import E2eKeysService
from homeserver.services.presence import PresenceService
from homeserver.storage.database import Connection
from homeserver.storage.stores.devices import DeviceStore

logger = logging.getLogger(__name__)

PRESENCE_PER_EDU = 100


class LocalEdus:
    def __init__(
        self,
        sender: FederationSender,
        bus: StreamBus,
        resolver: DestinationResolver,
        clock: Clock,
        *,
        presence: PresenceService | None,
        e2e_keys: E2eKeysService,
        devices: DeviceStore,
    ) -> None:
        self.sender = sender
        self.resolver = resolver
        self.clock = clock
        self.presence = presence
        self.e2e_keys = e2e_keys
        self.devices = devices
        self._typing: dict[str, frozenset[str]] = {}  # room_id -> local users typing
        self._tasks: set[asyncio.Task[Any]] = set()
        bus.subscribe(Stream.TYPING, self.on_typing)
        bus.subscribe(Stream.RECEIPTS, self.on_receipts)
        if presence is not None:
            bus.subscribe(Stream.PRESENCE, self.on_presence)
            bus.subscribe(Stream.EVENTS, self.on_events)
        sender.followers.append(
            StreamFollower(
                Stream.DEVICE_LISTS,
                bus,
                sender.db,
                sender.store,
                self._prepare_device_lists,
                lock=asyncio.Lock(),
                after_commit=sender._wake_pending,
            )
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, DatabaseUnavailableError):
            logger.warning("federation sender: outbound EDU not queued: %s", exc)
        elif exc is not None:
            logger.error("federation sender: an outbound EDU failed", exc_info=exc)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- typing ----------------------------------------------------------------------------------

    def on_typing(self, position: int, rows: Sequence[StreamRow]) -> None:
        for row in rows:
            if not isinstance(row, TypingRow):
                continue
            now = frozenset(u for u in row.user_ids if self.sender.is_local(u))
            before = self._typing.get(row.room_id, frozenset())
            if now:
                self._typing[row.room_id] = now
            else:
                self._typing.pop(row.room_id, None)
            changes = [(u, True) for u in sorted(now - before)] + [(u, False) for u in sorted(before - now)]
            if changes:
                self._spawn(self._send_typing(row.room_id, changes))

    async def _send_typing(self, room_id: str, changes: list[tuple[str, bool]]) -> None:
        for destination in await self.resolver.room_hosts(room_id):
            for user_id, typing in changes:
                content = {"room_id": room_id, "user_id": user_id, "typing": typing}
                await self.sender.send_edu(destination, "m.typing", content, key=f"{room_id} {user_id}")

    # -- receipts --------------------------------------------------------------------------------

    def on_receipts(self, position: int, rows: Sequence[StreamRow]) -> None:
        for row in rows:
            if isinstance(row, ReceiptRow) and not row.private and self.sender.is_local(row.user_id):
                self._spawn(self._send_receipt(row, self.clock.time_ms()))

    async def _send_receipt(self, row: ReceiptRow, ts: int) -> None:
        data: dict[str, Any] = {"ts": ts}
        if row.thread_id is not None:
            data["thread_id"] = row.thread_id
        content = {
            row.room_id: {row.receipt_type: {row.user_id: {"event_ids": [row.event_id], "data": data}}}
        }
        key = f"{row.room_id} {row.receipt_type} {row.user_id} {row.thread_id or ''}"
        for destination in await self.resolver.room_hosts(row.room_id):
            await self.sender.send_edu(destination, "m.receipt", content, key=key)

    # -- presence --------------------------------------------------------------------------------

    def on_presence(self, position: int, rows: Sequence[StreamRow]) -> None:
        for row in rows:
            if isinstance(row, PresenceStreamRow) and self.sender.is_local(row.user_id):
                self._spawn(self._send_presence(row.user_id))

    async def _presence_entry(self, user_id: str) -> dict[str, Any]:
        assert self.presence is not None
        state = await self.presence.get_state(user_id)
        entry: dict[str, Any] = {
            "user_id": user_id,
            "presence": state.state,
            # required by the spec; never active gives a huge value, as with Synapse
            "last_active_ago": max(0, self.clock.time_ms() - state.last_active_ts),
            "currently_active": state.currently_active,
        }
        if state.status_msg:
            entry["status_msg"] = state.status_msg
        return entry

    async def _send_presence(self, user_id: str) -> None:
        entry = await self._presence_entry(user_id)
        for destination in await self.resolver.hosts_sharing_rooms(user_id):
            await self.sender.send_edu(destination, "m.presence", {"push": [entry]}, key=user_id)

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """A server whose first user joins one of our rooms gets the presence of our users there
        (as Synapse): it has heard none of their changes so far."""
        for row in rows:
            if (
                isinstance(row, EventsRow)
                and row.is_live
                and row.membership == JOIN
                and row.state_key is not None
                and not self.sender.is_local(row.state_key)
            ):
                self._spawn(self._presence_to_new_server(row.room_id, row.state_key))

    async def _presence_to_new_server(self, room_id: str, joined_user: str) -> None:
        server = server_of(joined_user)
        snapshot = await self.resolver.state.get(room_id)
        if snapshot is None or not self.resolver.allowed(server):
            return
        joined = snapshot.members_with(JOIN)
        if any(server_of(u) == server and u != joined_user for u in joined):
            return  # the server was already in the room
        push = []
        for user_id in sorted(u for u in joined if self.sender.is_local(u)):
            entry = await self._presence_entry(user_id)
            if entry["presence"] != "offline":
                push.append(entry)
        for start in range(0, len(push), PRESENCE_PER_EDU):
            await self.sender.send_edu(server, "m.presence", {"push": push[start : start + PRESENCE_PER_EDU]})

    # -- device lists and cross-signing keys -----------------------------------------------------

    async def _prepare_device_lists(self, rows: Sequence[StreamRow]) -> Writer | None:
        changes = sorted(
            {
                (r.stream_id, r.user_id)
                for r in rows
                if isinstance(r, DeviceListsRow) and r.visible_to is None and self.sender.is_local(r.user_id)
            }
        )
        if not changes:
            return None
        by_change = await self.sender.store.changed_devices([sid for sid, _ in changes])
        # (stream_id, user_id, hosts, device update contents, signing-key content or None)
        plan: list[tuple[int, str, set[str], list[dict[str, Any]], dict[str, Any] | None]] = []
        for stream_id, user_id in changes:
            hosts = await self.resolver.hosts_sharing_rooms(user_id)
            if not hosts:
                continue
            device_ids = by_change.get((stream_id, user_id), [])
            if device_ids:
                updates = [await self._device_update(user_id, d) for d in device_ids]
                plan.append((stream_id, user_id, hosts, updates, None))
            else:
                plan.append((stream_id, user_id, hosts, [], await self._signing_key_update(user_id)))
        if not plan:
            return None

        async def write(conn: Connection) -> None:
            for stream_id, user_id, hosts, updates, signing in plan:
                for destination in sorted(hosts):
                    if updates:
                        await self._queue_device_update(conn, destination, user_id, stream_id, updates)
                    if signing is not None:
                        await self.sender.queue_edu_txn(
                            conn, destination, "m.signing_key_update", signing, key=user_id
                        )
                    self.sender._to_wake.add(destination)

        return write

    async def _device_update(self, user_id: str, device_id: str) -> dict[str, Any]:
        content: dict[str, Any] = {"user_id": user_id, "device_id": device_id}
        device = await self.devices.get_device(user_id, device_id)
        if device is None:
            content["deleted"] = True
            return content
        if device.display_name is not None:
            content["device_display_name"] = device.display_name
        keys = await self.e2e_keys.query_keys(user_id, {user_id: [device_id]})
        device_keys = keys["device_keys"].get(user_id, {}).get(device_id)
        if device_keys is not None:
            content["keys"] = device_keys
        return content

    async def _signing_key_update(self, user_id: str) -> dict[str, Any] | None:
        keys = await self.e2e_keys.query_keys(user_id, {user_id: []})
        content: dict[str, Any] = {"user_id": user_id}
        for field, source in (("master_key", "master_keys"), ("self_signing_key", "self_signing_keys")):
            key = keys[source].get(user_id)
            if key is not None:
                content[field] = key
        return content if len(content) > 1 else None

    async def _queue_device_update(
        self, conn: Connection, destination: str, user_id: str, stream_id: int, updates: list[dict[str, Any]]
    ) -> None:
        """`stream_id` is the change's device-list position, the id GET /user/devices reports as
        the user's latest; `prev_id` names the last one this destination was sent for the user.
        A change of several devices (a logout of all of them) shares one position, and a receiver
        ignores an update whose stream_id it has seen: it goes out as one update with an empty
        prev_id, which makes the receiver fetch the whole list (as Synapse does)."""
        if not self.sender.resolver.allowed(destination):
            return
        prev = await self.sender.store.swap_device_list_sent_txn(conn, destination, user_id, stream_id)
        first = updates[0]
        prev_id = [prev] if prev is not None and len(updates) == 1 else []
        content = {**first, "stream_id": stream_id, "prev_id": prev_id}
        # Keyed by device: an update still queued (the destination is down) is replaced, so its
        # queue holds one per device; the receiver, not knowing prev_id, then resyncs the list.
        key = f"{user_id} {first['device_id']}"
        await self.sender.queue_edu_txn(conn, destination, "m.device_list_update", content, key)
