"""The keyring: verify keys of other servers, fetched, checked and cached.

Lookup order (Synapse's): the `server_keys` table; then each of `trusted_key_servers` (notaries,
`POST /_matrix/key/v2/query`); then the server itself (`GET /_matrix/key/v2/server`). A response
is accepted only when

* its `server_name` is the server asked about,
* it is signed by the server with every key it lists in `verify_keys` (self-signature), and
* when it came through a notary, it is also signed by that notary: with one of the notary's
  configured `verify_keys`, or, when none are configured, a key of the notary fetched directly.

Keys stay usable until the response's `valid_until_ts` (old keys: their `expired_ts`), and the
whole signed response is kept so this server can act as a notary for it in turn. Concurrent
lookups for one server share a single fetch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote

from nacl.signing import VerifyKey
from signedjson.sign import SignatureVerifyException, verify_signed_json
from signedjson.types import VerifyKey as SignedJsonVerifyKey

from homeserver.config.sections import TrustedKeyServer
from homeserver.core.clock import Clock
from homeserver.crypto.keys import decode_verify_key
from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import FederationClient, FederationError
from homeserver.storage.stores.federation import ServerKeyStore, StoredServerKey

logger = logging.getLogger(__name__)

KEY_FETCH_TIMEOUT = 10.0
# After a failed fetch, unknown key ids of that server are not re-fetched for this long (a burst
# of requests signed with a bad key must not become a burst of key fetches).
NEGATIVE_CACHE_MS = 30_000


class KeyResponseError(ValueError):
    pass


def _verify_keys_of(response: Mapping[str, Any], section: str) -> dict[str, dict[str, Any]]:
    value = response.get(section, {})
    if not isinstance(value, dict):
        raise KeyResponseError(f"{section} is not an object")
    return value


def parse_key_response(
    response: Any, server_name: str, fetched_from: str, now_ms: int
) -> list[StoredServerKey]:
    """Validate one server-keys response (self-signature included) into rows to store."""
    if not isinstance(response, dict):
        raise KeyResponseError("not an object")
    if response.get("server_name") != server_name:
        raise KeyResponseError(f"server_name is {response.get('server_name')!r}, expected {server_name!r}")
    valid_until = response.get("valid_until_ts")
    if not isinstance(valid_until, int) or isinstance(valid_until, bool):
        raise KeyResponseError("valid_until_ts is missing or not an integer")
    current = _verify_keys_of(response, "verify_keys")
    if not current:
        raise KeyResponseError("no verify_keys")
    key_json = json.dumps(response, separators=(",", ":"), ensure_ascii=False)
    rows: list[StoredServerKey] = []
    for key_id, entry in current.items():
        if not key_id.startswith("ed25519:"):
            continue  # unknown algorithms: neither used nor an error
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise KeyResponseError(f"verify_keys.{key_id} has no key")
        try:
            verify_key = decode_verify_key(key_id, entry["key"])
            verify_signed_json(response, server_name, cast(SignedJsonVerifyKey, verify_key))
        except (ValueError, SignatureVerifyException) as exc:
            raise KeyResponseError(f"not signed by {server_name} with {key_id}: {exc}") from exc
        rows.append(
            StoredServerKey(
                server_name, key_id, entry["key"], valid_until, None, fetched_from, now_ms, key_json
            )
        )
    if not rows:
        raise KeyResponseError("no ed25519 verify keys")
    for key_id, entry in _verify_keys_of(response, "old_verify_keys").items():
        if not key_id.startswith("ed25519:") or not isinstance(entry, dict):
            continue
        key, expired = entry.get("key"), entry.get("expired_ts")
        if not isinstance(key, str) or not isinstance(expired, int) or isinstance(expired, bool):
            continue
        try:
            decode_verify_key(key_id, key)
        except ValueError:
            continue
        if key_id not in current:
            rows.append(
                StoredServerKey(server_name, key_id, key, expired, expired, fetched_from, now_ms, key_json)
            )
    return rows


def _signed_by_any(response: Mapping[str, Any], server_name: str, keys: Mapping[str, VerifyKey]) -> bool:
    for key in keys.values():
        try:
            verify_signed_json(dict(response), server_name, cast(SignedJsonVerifyKey, key))
            return True
        except SignatureVerifyException:
            continue
    return False


class FederationKeyring:
    """Implements `homeserver.crypto.keyring.Keyring` over the network and `server_keys`."""

    def __init__(
        self,
        store: ServerKeyStore,
        client: FederationClient,
        clock: Clock,
        *,
        server_name: str,
        own_keys: Mapping[str, tuple[VerifyKey, int]],
        trusted_key_servers: tuple[TrustedKeyServer, ...],
    ) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.server_name = server_name
        self.own_keys = dict(own_keys)  # key id -> (key, valid until): ours, current and old
        self.trusted_key_servers = trusted_key_servers
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._failed_at: dict[str, int] = {}

    # -- the Keyring protocol ------------------------------------------------------------------

    async def get_verify_key(self, server_name: str, key_id: str, *, valid_at_ts: int) -> VerifyKey | None:
        if server_name == self.server_name:
            own = self.own_keys.get(key_id)
            return own[0] if own is not None and own[1] >= valid_at_ts else None
        stored = await self._cached(server_name, key_id, valid_at_ts)
        if stored is not None:
            return stored
        await self.fetch_keys(server_name, {key_id: valid_at_ts})
        return await self._cached(server_name, key_id, valid_at_ts)

    async def _cached(self, server_name: str, key_id: str, valid_at_ts: int) -> VerifyKey | None:
        row = await self.store.get_server_key(server_name, key_id)
        if row is None or row.valid_until_ts < valid_at_ts:
            return None
        return decode_verify_key(key_id, row.verify_key)

    # -- fetching ----------------------------------------------------------------------------

    async def fetch_keys(self, server_name: str, wanted: Mapping[str, int]) -> None:
        """Fetch `server_name`'s keys (one fetch at a time per server); failures are logged.

        After a failed fetch the server is left alone for NEGATIVE_CACHE_MS, so neither requests
        signed with unknown keys nor notary queries can turn into a stream of outbound fetches.
        """
        failed = self._failed_at.get(server_name)
        if failed is not None and self.clock.time_ms() - failed < NEGATIVE_CACHE_MS:
            return
        pending = self._inflight.get(server_name)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[server_name] = future
        try:
            ok = await self._fetch(server_name, wanted)
            if ok:
                self._failed_at.pop(server_name, None)
            else:
                self._failed_at[server_name] = self.clock.time_ms()
        finally:
            del self._inflight[server_name]
            future.set_result(None)

    async def _fetch(self, server_name: str, wanted: Mapping[str, int]) -> bool:
        for notary in self.trusted_key_servers:
            if notary.server_name == server_name:
                continue
            if await self._from_notary(notary, server_name, wanted):
                return True
        return await self._direct(server_name, wanted)

    def _satisfies(self, rows: list[StoredServerKey], wanted: Mapping[str, int]) -> bool:
        have = {r.key_id: r.valid_until_ts for r in rows}
        return all(k in have and have[k] >= ts for k, ts in wanted.items())

    async def _direct(self, server_name: str, wanted: Mapping[str, int]) -> bool:
        try:
            response = await self.client.get_json(
                server_name,
                "/_matrix/key/v2/server",
                time_limit=KEY_FETCH_TIMEOUT,
                signed=False,
                ignore_backoff=True,
            )
            rows = parse_key_response(response, server_name, server_name, self.clock.time_ms())
        except (FederationError, NotRetryingDestination, KeyResponseError) as exc:
            logger.warning("fetching the keys of %s failed: %s", server_name, exc)
            return False
        await self.store.upsert_server_keys(rows)
        return self._satisfies(rows, wanted)

    async def _notary_keys(self, notary: TrustedKeyServer) -> dict[str, VerifyKey]:
        if notary.verify_keys is not None:
            keys: dict[str, VerifyKey] = {}
            for key_id, key in notary.verify_keys.items():
                try:
                    keys[key_id] = decode_verify_key(key_id, key)
                except ValueError:
                    logger.warning(
                        "trusted_key_servers: bad verify key %s for %s", key_id, notary.server_name
                    )
            return keys
        rows = [r for r in await self.store.list_server_keys(notary.server_name) if r.expired_ts is None]
        now = self.clock.time_ms()
        if not any(r.valid_until_ts >= now for r in rows):
            await self._direct(notary.server_name, {})
            rows = [r for r in await self.store.list_server_keys(notary.server_name) if r.expired_ts is None]
        return {r.key_id: decode_verify_key(r.key_id, r.verify_key) for r in rows if r.valid_until_ts >= now}

    async def _from_notary(
        self, notary: TrustedKeyServer, server_name: str, wanted: Mapping[str, int]
    ) -> bool:
        query = {
            "server_keys": {server_name: {k: {"minimum_valid_until_ts": ts} for k, ts in wanted.items()}}
        }
        try:
            body = await self.client.post_json(
                notary.server_name, "/_matrix/key/v2/query", query, time_limit=KEY_FETCH_TIMEOUT, signed=False
            )
        except (FederationError, NotRetryingDestination) as exc:
            logger.warning(
                "notary %s could not give the keys of %s: %s", notary.server_name, server_name, exc
            )
            return False
        responses = body.get("server_keys") if isinstance(body, dict) else None
        if not isinstance(responses, list):
            logger.warning("notary %s sent a malformed key query response", notary.server_name)
            return False
        notary_keys = await self._notary_keys(notary)
        rows: list[StoredServerKey] = []
        for response in responses:
            if not isinstance(response, dict) or response.get("server_name") != server_name:
                continue
            if not _signed_by_any(response, notary.server_name, notary_keys):
                logger.warning(
                    "notary %s response for %s lacks a valid notary signature",
                    notary.server_name,
                    server_name,
                )
                continue
            try:
                rows.extend(
                    parse_key_response(response, server_name, notary.server_name, self.clock.time_ms())
                )
            except KeyResponseError as exc:
                logger.warning("notary %s returned bad keys for %s: %s", notary.server_name, server_name, exc)
        if rows:
            await self.store.upsert_server_keys(rows)
        return bool(rows) and self._satisfies(rows, wanted)


def key_query_path(server_name: str) -> str:
    return "/_matrix/key/v2/query/" + quote(server_name, safe="")
