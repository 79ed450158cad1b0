"""Stream announcements and cache invalidations over Redis (pub/sub), main process side.

Redis carries no data that is not also in the database: each message says "stream S moved from
`prev` to `position`, with these rows". A worker that sees `prev` above its own position missed
something (a Redis restart, a dropped connection) and reads the missing rows from the database
(`StreamBus.rows_since`); a heartbeat with every stream's position every few seconds lets an idle
worker notice a lost last message too. Publishing never blocks a commit: the bus consumer only
queues, one task sends; when Redis is down messages are dropped and the workers catch up later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from homeserver.core.streams import Stream, StreamRow, row_to_json
from homeserver.replication.bus import StreamBus
from homeserver.replication.roles import ALL_STREAMS

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
RETRY_SECONDS = 1.0
QUEUE_LIMIT = 100_000  # beyond this (Redis down for long) messages are dropped; workers catch up


class ReplicationUnavailableError(RuntimeError):
    """Redis or the main process cannot be reached, or refused us (one line for the operator)."""


def channel_prefix(server_name: str) -> str:
    return f"homeserver:{server_name}"


def stream_channel(server_name: str, stream: Stream) -> str:
    return f"{channel_prefix(server_name)}:stream:{stream.value}"


def positions_channel(server_name: str) -> str:
    return f"{channel_prefix(server_name)}:positions"


def invalidations_channel(server_name: str) -> str:
    return f"{channel_prefix(server_name)}:invalidate"


def make_client(host: str, port: int, password: str | None, db: int, use_tls: bool) -> aioredis.Redis:
    return aioredis.Redis(
        host=host,
        port=port,
        password=password,
        db=db,
        ssl=use_tls,
        socket_connect_timeout=5,
        health_check_interval=10,
    )


async def check_reachable(client: aioredis.Redis, where: str) -> None:
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise ReplicationUnavailableError(f"cannot reach Redis at {where}: {exc}") from exc


# Extra data sent with a stream's rows that the rows alone do not carry (presence: the full state,
# which reaches the database only with the write-behind flush).
Extras = Callable[[Sequence[StreamRow]], Any]


class RedisPublisher:
    def __init__(
        self, client: aioredis.Redis, bus: StreamBus, server_name: str, extras: dict[Stream, Extras]
    ) -> None:
        self.client = client
        self.bus = bus
        self.server_name = server_name
        self.extras = extras
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_LIMIT)
        self._last: dict[Stream, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._down = False
        self.dropped = 0

    def attach(self) -> None:
        """Subscribe to every stream of the local bus; call before the first commit."""
        for stream in ALL_STREAMS:
            self._last[stream] = self.bus.positions[stream]
            self.bus.subscribe(stream, self._consumer(stream))

    def _consumer(self, stream: Stream) -> Callable[[int, Sequence[StreamRow]], None]:
        def on_rows(position: int, rows: Sequence[StreamRow]) -> None:
            prev = self._last[stream]
            self._last[stream] = max(prev, position)
            message: dict[str, Any] = {"p": position, "prev": prev, "rows": [row_to_json(r) for r in rows]}
            extra = self.extras.get(stream)
            if extra is not None:
                message["x"] = extra(rows)
            self._put(stream_channel(self.server_name, stream), message)

        return on_rows

    def invalidate(self, kind: str, **data: Any) -> None:
        """A cache entry other processes must drop (tokens, pushers...)."""
        self._put(invalidations_channel(self.server_name), {"kind": kind, **data})

    def _put(self, channel: str, message: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((channel, json.dumps(message, separators=(",", ":"))))
        except asyncio.QueueFull:
            self.dropped += 1

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="redis-publish"),
            asyncio.create_task(self._heartbeat_loop(), name="redis-heartbeat"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.client.aclose()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            positions = {s.value: p for s, p in self._last.items()}
            self._put(positions_channel(self.server_name), {"positions": positions})

    async def _send_loop(self) -> None:
        while True:
            channel, payload = await self._queue.get()
            while True:
                try:
                    await self.client.publish(channel, payload)
                    if self._down:
                        logger.info("Redis is back: announcing stream positions again")
                        self._down = False
                    break
                except (RedisError, OSError) as exc:
                    if not self._down:
                        logger.warning("Redis unreachable (%s): workers will catch up from the database", exc)
                        self._down = True
                    # Drop what piled up: the workers read it from the database.
                    self.dropped += self._queue.qsize() + 1
                    while not self._queue.empty():
                        self._queue.get_nowait()
                    await asyncio.sleep(RETRY_SECONDS)
                    break
