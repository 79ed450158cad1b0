"""Per-destination backoff for outbound federation, persisted in `destinations`.

After a failure (unreachable, timeout, TLS error, 5xx) a destination is skipped for
`retry_interval`; the next failure multiplies the interval by `destination_retry_multiplier`, up to
`destination_max_retry_interval`; the first success resets it. Kept in the database (Synapse's
table and semantics) so a restart does not hammer servers that are down. A small in-memory copy
saves a query per request.
"""

from __future__ import annotations

import logging

from homeserver.core.clock import Clock
from homeserver.storage.stores.federation import DestinationRetry, DestinationStore

logger = logging.getLogger(__name__)


class NotRetryingDestination(Exception):
    def __init__(self, destination: str, retry_at_ms: int) -> None:
        super().__init__(f"not retrying {destination} until {retry_at_ms}")
        self.destination = destination
        self.retry_at_ms = retry_at_ms


class DestinationBackoff:
    def __init__(
        self,
        store: DestinationStore,
        clock: Clock,
        *,
        min_interval: int,
        multiplier: float,
        max_interval: int,
    ) -> None:
        self.store = store
        self.clock = clock
        self.min_interval = min_interval
        self.multiplier = multiplier
        self.max_interval = max_interval
        self._cache: dict[str, DestinationRetry | None] = {}

    async def get(self, destination: str) -> DestinationRetry | None:
        if destination not in self._cache:
            self._cache[destination] = await self.store.get_destination(destination)
        return self._cache[destination]

    async def check(self, destination: str) -> None:
        """Raise NotRetryingDestination while the destination is backing off."""
        retry = await self.get(destination)
        if retry is None or retry.retry_interval == 0:
            return
        retry_at = retry.retry_last_ts + retry.retry_interval
        if self.clock.time_ms() < retry_at:
            raise NotRetryingDestination(destination, retry_at)

    async def record_success(self, destination: str) -> None:
        retry = await self.get(destination)
        if retry is None or (retry.retry_interval == 0 and retry.failure_ts is None):
            return
        logger.info("destination %s is reachable again", destination)
        fresh = DestinationRetry(destination, None, 0, 0)
        await self.store.upsert_destination(fresh)
        self._cache[destination] = fresh

    async def reset(self, destination: str) -> None:
        """Forget the failures (admin reset_connection): the next request goes out at once."""
        fresh = DestinationRetry(destination, None, 0, 0)
        await self.store.upsert_destination(fresh)
        self._cache[destination] = fresh

    async def record_failure(self, destination: str) -> None:
        retry = await self.get(destination)
        now = self.clock.time_ms()
        if retry is None or retry.retry_interval == 0:
            interval = self.min_interval
            failure_ts = now
        else:
            interval = min(int(retry.retry_interval * self.multiplier), self.max_interval)
            failure_ts = retry.failure_ts or now
        updated = DestinationRetry(destination, failure_ts, now, interval)
        await self.store.upsert_destination(updated)
        self._cache[destination] = updated
        logger.info("destination %s failed; not retrying for %d s", destination, interval // 1000)
