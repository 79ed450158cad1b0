"""EDUs for other servers queued by a process that does not run the federation sender.

With `federation_sender_instances: [name]` the sender runs on that worker, but some EDUs are born
on main inside a client request's own transaction: to-device messages for remote users are
queued with the claim of the client's transaction id, so a retry never sends them twice. Main
writes them to `federation_outbox` in that transaction (`FederationOutbox`, main's stand-in for
`FederationSender.queue_edu_txn`) and announces "outbox" over Redis; the worker moves them into its
own queue (`OutboxReader`), with its own EDU sequence numbers, in one transaction. The
announcement only saves time: the worker also reads the outbox at start and every
`POLL_SECONDS`, so an announcement lost with Redis delays delivery, never loses it.

PDUs, typing, receipts, presence and device lists need none of this: the worker follows those
streams itself (replication/roles.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from homeserver.core.errors import DatabaseUnavailableError
from homeserver.federation.sender.sender import FederationSender
from homeserver.storage.database import Connection
from homeserver.storage.stores.federation_queue import FederationQueueStore

logger = logging.getLogger(__name__)

POLL_SECONDS = 10.0
BATCH = 500


class FederationOutbox:
    """Main's remote to-device queue when a worker sends (services/to_device.RemoteToDeviceQueue)."""

    def __init__(self, store: FederationQueueStore) -> None:
        self.store = store
        # called after a commit that queued something (main: a Redis announcement to the worker)
        self.wake_hooks: list[Callable[[], None]] = []

    async def queue_edu_txn(
        self,
        conn: Connection,
        destination: str,
        edu_type: str,
        content: dict[str, Any],
        key: str | None = None,
    ) -> int | None:
        # (the worker applies the destination whitelist when it moves the row)
        return await self.store.outbox_put_txn(conn, destination, edu_type, content, key)

    def wake(self, destinations: Iterable[str]) -> None:
        for hook in self.wake_hooks:
            hook()


class OutboxReader:
    """On the federation_sender worker: moves outbox rows into the sender's queues."""

    def __init__(self, sender: FederationSender, store: FederationQueueStore) -> None:
        self.sender = sender
        self.store = store
        self.moved = 0
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiting_for_db = False

    def start(self) -> None:
        self._poke.set()  # whatever main queued while no sender ran
        self._task = asyncio.create_task(self._run(), name="federation-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self) -> None:
        """Main announced new rows."""
        self._poke.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), POLL_SECONDS)
            self._poke.clear()
            try:
                while await self.move_batch() == BATCH:
                    pass
                if self._waiting_for_db:
                    logger.info("federation outbox: the database is back")
                    self._waiting_for_db = False
            except DatabaseUnavailableError as exc:
                if not self._waiting_for_db:
                    logger.warning("federation outbox: waiting for the database: %s", exc)
                    self._waiting_for_db = True
            except Exception:  # a bug must not stop the reader for good: the rows stay queued
                logger.exception("federation outbox: moving queued EDUs failed; retrying")

    async def move_batch(self) -> int:
        """Move up to BATCH rows, oldest first, in one transaction; returns how many."""
        destinations: set[str] = set()
        async with self.sender.db.transaction() as conn:
            rows = await self.store.outbox_rows_txn(conn, BATCH)
            for row in rows:
                seq = await self.sender.queue_edu_txn(
                    conn, row.destination, row.edu_type, row.content, row.key
                )
                if seq is not None:
                    destinations.add(row.destination)
            await self.store.outbox_delete_txn(conn, [row.id for row in rows])
        self.moved += len(rows)
        self.sender.wake(destinations)
        return len(rows)
