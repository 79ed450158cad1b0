"""A worker's HTTP client for the main process's internal replication API.

Every call carries `Authorization: Bearer <worker_replication_secret>`; main answers 403 to a wrong
one, which stops the worker at start with one line (see `handshake`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp

from homeserver.config.workers import WorkerConfig
from homeserver.replication.redis_link import ReplicationUnavailableError

logger = logging.getLogger(__name__)

PREFIX = "/_homeserver/replication/v1"
HANDSHAKE_ATTEMPTS = 10  # main may still be starting when its workers are
# A client's next long-poll follows the last at once: main hears "stopped syncing" only after
# this long without one (as Synapse's UPDATE_SYNCING_USERS_MS), not twice per /sync.
SYNC_STOP_GRACE_SECONDS = 10.0


class MainClient:
    def __init__(self, workers: WorkerConfig) -> None:
        assert workers.main_url and workers.replication_secret
        self.base = workers.main_url
        self.workers = workers
        self.headers = {"Authorization": f"Bearer {workers.replication_secret}"}
        self._session: aiohttp.ClientSession | None = None
        self._presence: asyncio.Queue[dict[str, Any]] = asyncio.Queue(10_000)
        self._presence_task: asyncio.Task[None] | None = None
        # (user, device, set_presence) -> /syncs running here now; and the pending "stopped" timers
        self._syncing: dict[tuple[str, str | None, str | None], int] = {}
        self._stop_timers: dict[tuple[str, str | None, str | None], asyncio.TimerHandle] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=330),
                auto_decompress=False,  # forwarded bodies go back as they came
            )
        return self._session

    async def close(self) -> None:
        for timer in self._stop_timers.values():
            timer.cancel()
        if self._presence_task is not None:
            self._presence_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._presence_task
        if self._session is not None:
            await self._session.close()

    async def _get_json(self, path: str, **params: str) -> dict[str, Any]:
        async with self.session.get(self.base + PREFIX + path, params=params, headers=self.headers) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
            if resp.status == 403:
                raise ReplicationUnavailableError(
                    f"the main process at {self.base} refused this worker: wrong worker_replication_secret"
                )
            if resp.status != 200:
                raise ReplicationUnavailableError(
                    f"the main process at {self.base} answered {resp.status} {body.get('errcode', '')} "
                    f"to {path}: {body.get('error', '')}".rstrip(": ")
                )
            return body

    async def handshake(self) -> dict[str, Any]:
        """Check the secret and learn main's in-memory positions (typing); retries while main starts."""
        last: Exception | None = None
        for attempt in range(HANDSHAKE_ATTEMPTS):
            try:
                return await self._get_json("/handshake", role=self.workers.role, name=self.workers.name)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last = exc
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        raise ReplicationUnavailableError(f"cannot reach the main process at {self.base}: {last}")

    async def typing_snapshot(self) -> dict[str, Any]:
        return await self._get_json("/typing")

    async def events_purged(self, event_ids: list[str]) -> None:
        """The background worker deleted these events: main and the other workers drop them
        from their caches (the database no longer has them)."""
        try:
            async with self.session.post(
                self.base + PREFIX + "/events/purged", json={"event_ids": event_ids}, headers=self.headers
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    logger.warning("main refused the purged events' invalidation: %s", resp.status)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # (the events are gone from the database; caches drop them as they evict)
            logger.warning("could not tell main that %d events were purged: %s", len(event_ids), exc)

    # -- presence: a sync on this worker keeps its user online on main --------------------------

    def presence_syncing(
        self, user_id: str, device_id: str | None, set_presence: str | None, syncing: bool
    ) -> None:
        """A /sync started or ended here. Main hears of the first start and of the end of the
        last one (after a grace), so steady long-polling costs main nothing."""
        key = (user_id, device_id, set_presence)
        count = self._syncing.get(key, 0)
        if syncing:
            self._syncing[key] = count + 1
            timer = self._stop_timers.pop(key, None)
            if timer is not None:
                timer.cancel()  # still syncing: main was never told it stopped
            elif count == 0:
                self._send_presence(key, True)
            return
        if count <= 1:
            self._syncing.pop(key, None)
            if key not in self._stop_timers:
                loop = asyncio.get_running_loop()
                self._stop_timers[key] = loop.call_later(SYNC_STOP_GRACE_SECONDS, self._stopped, key)
        else:
            self._syncing[key] = count - 1

    def _stopped(self, key: tuple[str, str | None, str | None]) -> None:
        self._stop_timers.pop(key, None)
        if key not in self._syncing:
            self._send_presence(key, False)

    def _send_presence(self, key: tuple[str, str | None, str | None], syncing: bool) -> None:
        if self._presence_task is None:
            self._presence_task = asyncio.create_task(self._presence_loop(), name="presence-forward")
        user_id, device_id, set_presence = key
        body = {"user_id": user_id, "device_id": device_id, "set_presence": set_presence, "syncing": syncing}
        with contextlib.suppress(asyncio.QueueFull):
            self._presence.put_nowait(body)

    async def _presence_loop(self) -> None:
        # One at a time, in order: a sync's "finished" must not overtake its "started".
        while True:
            body = await self._presence.get()
            try:
                async with self.session.post(
                    self.base + PREFIX + "/presence/syncing", json=body, headers=self.headers
                ) as resp:
                    await resp.read()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                logger.warning("could not tell main that %s is syncing: %s", body["user_id"], exc)
