"""What this server publishes about keys: its own (`/_matrix/key/v2/server`) and, as a notary,
those of other servers (`/_matrix/key/v2/query`), each response signed by us as well."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Mapping
from typing import Any

from homeserver.config.sections import OldSigningKey
from homeserver.core.clock import Clock
from homeserver.crypto.keys import ServerSigningKey, server_keys_response
from homeserver.crypto.signing import sign_json
from homeserver.federation.keyring import FederationKeyring
from homeserver.storage.stores.federation import ServerKeyStore

logger = logging.getLogger(__name__)

# A notary query may name this many servers at most (each may cost a fetch).
MAX_SERVERS_PER_QUERY = 100
CONCURRENT_FETCHES = 10


class KeyServer:
    def __init__(
        self,
        server_name: str,
        signing_key: ServerSigningKey,
        old_keys: tuple[OldSigningKey, ...],
        clock: Clock,
        store: ServerKeyStore,
        keyring: FederationKeyring,
        *,
        key_refresh_interval: int,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.old_keys = old_keys
        self.clock = clock
        self.store = store
        self.keyring = keyring
        self.key_refresh_interval = key_refresh_interval

    def own_keys(self) -> dict[str, Any]:
        """Our signed key response, valid for `key_refresh_interval` (Synapse: a day)."""
        old = {k.key_id: {"key": k.key, "expired_ts": k.expired_ts} for k in self.old_keys}
        return server_keys_response(
            self.server_name, self.signing_key, self.clock.time_ms() + self.key_refresh_interval, old
        )

    async def query(
        self, criteria: Mapping[str, Mapping[str, Any]], minimum_valid_until_ts: int | None = None
    ) -> list[dict[str, Any]]:
        """Responses for `{server: {key_id: {minimum_valid_until_ts}}}`, each countersigned by us.

        A server with no key ids named wants any current key valid at `minimum_valid_until_ts`
        (default: now). Cached responses are served when they satisfy the criteria; otherwise the
        server is asked (one that cannot be reached gives what is cached, possibly nothing).
        """
        now = self.clock.time_ms()
        # Servers are looked at concurrently (a few at a time), so that one slow or dead server
        # costs its timeout once rather than once per server named before it.
        gate = asyncio.Semaphore(CONCURRENT_FETCHES)

        async def one(server_name: str, key_criteria: Any) -> list[dict[str, Any]]:
            if server_name == self.server_name:
                return [self.own_keys()]
            wanted = (
                {key_id: _minimum(c, now) for key_id, c in key_criteria.items()}
                if isinstance(key_criteria, Mapping)
                else {}
            )
            async with gate:
                if not await self._satisfied(server_name, wanted, minimum_valid_until_ts or now):
                    await self.keyring.fetch_keys(server_name, wanted)
            return await self._cached_responses(server_name)

        items = list(criteria.items())[:MAX_SERVERS_PER_QUERY]
        results = await asyncio.gather(*(one(name, c) for name, c in items))
        return [response for result in results for response in result]

    async def _satisfied(self, server_name: str, wanted: Mapping[str, int], minimum: int) -> bool:
        rows = await self.store.list_server_keys(server_name)
        if not wanted:  # "all keys": any current key valid long enough will do
            return any(r.expired_ts is None and r.valid_until_ts >= minimum for r in rows)
        have = {r.key_id: r.valid_until_ts for r in rows}
        return all(k in have and have[k] >= ts for k, ts in wanted.items())

    async def _cached_responses(self, server_name: str) -> list[dict[str, Any]]:
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for row in await self.store.list_server_keys(server_name):
            if row.key_json in seen:
                continue
            seen.add(row.key_json)
            try:
                response = json.loads(row.key_json)
            except ValueError:
                continue
            out.append(sign_json(copy.deepcopy(response), self.server_name, self.signing_key))
        return out


def _minimum(criteria: Any, now: int) -> int:
    if isinstance(criteria, Mapping):
        value = criteria.get("minimum_valid_until_ts")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return now
