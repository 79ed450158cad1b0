"""Send-to-device messaging (spec "Send-to-Device messaging").

Each message gets its own position in the `to_device` stream and waits in `device_inbox` until the
device acknowledges it: a /sync whose `since` token is at or past the message's position deletes
it. /sync hands out at most `MAX_PER_SYNC` messages; when more wait, its `next_batch` stops at the
last one handed out, so the rest come with the next sync.

Because delivered rows are deleted, the highest position is also kept in `stream_watermarks`
(reserved in blocks, one write per `RESERVE_BLOCK` messages), so a restart never reuses a position a
client's token already passed - that would make the server drop unseen messages as acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.core.streams import Stream, ToDeviceRow
from homeserver.replication.bus import StreamBus
from homeserver.storage.database import Connection, Database
from homeserver.storage.stores.devices import DeviceStore
from homeserver.storage.stores.e2e import E2eStore, ToDeviceMessage
from homeserver.storage.streams import StreamIdGenerator

logger = logging.getLogger(__name__)

MAX_PER_SYNC = 100
RESERVE_BLOCK = 1000
TXN_LIFETIME_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Delivery:
    events: list[dict[str, Any]]
    # The stream position the next sync token may claim: `upto`, or the last message handed out
    # when the batch was cut at MAX_PER_SYNC.
    position: int


class ToDeviceService:
    def __init__(
        self,
        db: Database,
        store: E2eStore,
        devices: DeviceStore,
        stream: StreamIdGenerator,
        bus: StreamBus,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self.db = db
        self.store = store
        self.devices = devices
        self.stream = stream
        self.bus = bus
        self.clock = clock
        self.server_name = server_name
        self._reserved = stream.current
        self._reserve_lock = asyncio.Lock()
        self._last_txn_cleanup = 0

    async def _reserve(self, count: int) -> None:
        async with self._reserve_lock:
            needed = self.stream.peek_next() + count - 1
            if needed > self._reserved:
                self._reserved = needed + RESERVE_BLOCK
                await self.store.set_watermark(Stream.TO_DEVICE, self._reserved)

    async def send(
        self,
        sender: str,
        sender_device: str | None,
        event_type: str,
        txn_id: str,
        messages: Any,
    ) -> None:
        if not isinstance(messages, dict):
            raise MatrixError(400, "M_BAD_JSON", "'messages' must be an object")
        suffix = ":" + self.server_name
        targets: list[tuple[str, str, dict[str, Any]]] = []
        for user_id, by_device in messages.items():
            if not isinstance(by_device, dict):
                raise MatrixError(400, "M_BAD_JSON", f"'messages.{user_id}' must be an object")
            for content in by_device.values():
                if not isinstance(content, dict):
                    raise MatrixError(400, "M_BAD_JSON", "Message contents must be objects")
            if not ids.is_valid_user_id(user_id):
                raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user id {user_id!r}")
            if not user_id.endswith(suffix):
                logger.info("dropping to-device messages for remote user %s: no federation yet", user_id)
                continue
            known = {d.device_id for d in await self.devices.list_devices(user_id)}
            if "*" in by_device:
                content = by_device["*"]
                targets.extend((user_id, d, content) for d in sorted(known))
            else:
                targets.extend((user_id, d, c) for d, c in by_device.items() if d in known)

        now = self.clock.time_ms()

        async def claim(conn: Connection) -> bool:
            return await self.store.claim_to_device_txn(conn, sender, sender_device or "", txn_id, now)

        await self._insert(sender, event_type, targets, claim)
        await self._cleanup_txns(now)

    async def receive_remote(
        self, sender: str, event_type: str, messages: Any, claim: Callable[[Connection], Awaitable[bool]]
    ) -> None:
        """An m.direct_to_device EDU (the caller checked the sender's server and parsed the
        shape): delivered to the local users' devices like a local message (`*`: every device);
        messages for users of other servers or unknown devices are dropped. `claim` records the
        EDU's message id in the same transaction and answers False for a retransmission."""
        suffix = ":" + self.server_name
        targets: list[tuple[str, str, dict[str, Any]]] = []
        for user_id, by_device in messages.items():
            if not user_id.endswith(suffix) or not isinstance(by_device, dict):
                continue
            known = {d.device_id for d in await self.devices.list_devices(user_id)}
            if "*" in by_device:
                content = by_device["*"]
                if isinstance(content, dict):
                    targets.extend((user_id, d, content) for d in sorted(known))
            else:
                targets.extend(
                    (user_id, d, c) for d, c in by_device.items() if d in known and isinstance(c, dict)
                )
        await self._insert(sender, event_type, targets, claim)

    async def _insert(
        self,
        sender: str,
        event_type: str,
        targets: list[tuple[str, str, dict[str, Any]]],
        claim: Callable[[Connection], Awaitable[bool]],
    ) -> None:
        await self._reserve(max(1, len(targets)))
        async with self.stream.next_n(max(1, len(targets))) as stream_ids:
            async with self.db.transaction() as conn:
                fresh = await claim(conn)
                if fresh and targets:
                    await self.store.insert_to_device_txn(
                        conn,
                        [
                            (user_id, device_id, stream_id, sender, event_type, content)
                            for stream_id, (user_id, device_id, content) in zip(
                                stream_ids, targets, strict=False
                            )
                        ],
                    )
        if fresh and targets:
            rows = [
                ToDeviceRow(stream_id, user_id, device_id)
                for stream_id, (user_id, device_id, _) in zip(stream_ids, targets, strict=False)
            ]
            # Publish (and so wake) once readers can see the messages (not while an earlier send
            # is in flight).
            self.stream.when_visible(
                stream_ids[-1], lambda: self.bus.publish(Stream.TO_DEVICE, self.stream.current, rows)
            )

    async def _cleanup_txns(self, now: int) -> None:
        if now - self._last_txn_cleanup < 3600 * 1000:
            return
        self._last_txn_cleanup = now
        await self.store.delete_to_device_txns_before(now - TXN_LIFETIME_MS)

    async def acknowledge(self, user_id: str, device_id: str, since: int) -> None:
        """The device synced with a token at `since`: everything up to it arrived; delete it."""
        if since > 0 and await self.store.has_to_device_upto(user_id, device_id, since):
            await self.store.delete_to_device_upto(user_id, device_id, since)

    async def deliver(self, user_id: str, device_id: str, since: int, upto: int) -> Delivery:
        """The messages after `since`, up to `upto`, at most MAX_PER_SYNC of them."""
        if upto <= since:
            return Delivery([], upto)
        messages: list[ToDeviceMessage] = await self.store.list_to_device(
            user_id, device_id, since, upto, MAX_PER_SYNC
        )
        position = messages[-1].stream_id if len(messages) >= MAX_PER_SYNC else upto
        return Delivery(
            [{"sender": m.sender, "type": m.type, "content": m.content} for m in messages], position
        )
