"""Last-seen address, user agent and time per device, kept cheap.

Every authenticated request records where it came from, so this must cost a dict assignment:
entries collect in memory and a background task writes them in one transaction every
FLUSH_INTERVAL seconds (and once more on shutdown). Readers (`GET /devices`) overlay the pending
entries on what the database holds, so a device's last-seen is current without a write per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from homeserver.core.clock import Clock
from homeserver.http.requester import Requester
from homeserver.storage.stores.client_ips import ClientIpStore, ClientSeen
from homeserver.storage.stores.devices import Device

logger = logging.getLogger(__name__)

# User agents are client-chosen: keep what identifies the client, not a 100 KB header.
MAX_USER_AGENT = 512
MAX_PENDING = 100_000


class ClientIpTracker:
    FLUSH_INTERVAL = 5.0

    def __init__(self, store: ClientIpStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        # (user_id, device_id, ip, user_agent) -> last seen ms, since the last flush
        self._pending: dict[tuple[str, str, str, str], int] = {}
        # (user_id, device_id) -> the newest pending sighting, for readers
        self._latest: dict[tuple[str, str], ClientSeen] = {}
        self._task: asyncio.Task[None] | None = None
        self._early: asyncio.Task[None] | None = None

    def record(self, requester: Requester, ip: str | None, user_agent: str | None) -> None:
        """Note one request by `requester` (called on every authenticated request)."""
        device_id = requester.device_id
        # Appservice users act through the appservice's token; Synapse does not track them either.
        if device_id is None or requester.app_service_id is not None or not ip:
            return
        now = self.clock.time_ms()
        agent = (user_agent or "")[:MAX_USER_AGENT]
        user_id = requester.user_id
        self._pending[(user_id, device_id, ip, agent)] = now
        self._latest[(user_id, device_id)] = ClientSeen(user_id, device_id, ip, agent, now)
        if len(self._pending) > MAX_PENDING and self._task is not None and self._early is None:
            # A burst of distinct clients: write early rather than grow without bound.
            self._early = asyncio.get_running_loop().create_task(self._flush_early())

    def with_pending(self, devices: list[Device]) -> list[Device]:
        """`devices` with their not yet flushed last-seen applied."""
        result = []
        for device in devices:
            seen = self._latest.get((device.user_id, device.device_id))
            if seen is not None and (device.last_seen_ts is None or device.last_seen_ts <= seen.last_seen):
                device = dataclasses.replace(device, last_seen_ts=seen.last_seen, last_seen_ip=seen.ip)
            result.append(device)
        return result

    async def list_seen(self, user_id: str) -> list[ClientSeen]:
        """Every (device, address, user agent) the user was seen with, newest first, including
        sightings not flushed yet (the admin API's whois)."""
        await self.flush()
        return await self.store.list_seen(user_id)

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        written = dict(self._latest)
        rows = [ClientSeen(u, d, ip, ua, ts) for (u, d, ip, ua), ts in pending.items()]
        try:
            await self.store.upsert_seen(rows)
        except Exception:
            # Keep what was not written (newer sightings win) and try again next time.
            logger.exception("could not write %d last-seen entries", len(rows))
            for key, ts in pending.items():
                self._pending.setdefault(key, ts)
            return
        # Readers now find these in the database; keep any that were replaced meanwhile.
        for device_key, seen in written.items():
            if self._latest.get(device_key) is seen:
                del self._latest[device_key]

    async def _flush_early(self) -> None:
        try:
            await self.flush()
        finally:
            self._early = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.FLUSH_INTERVAL)
            await self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
