"""The remote keyring (self-signatures, expiry, notaries), the notary key server and the
per-destination backoff, on both engines."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from homeserver.config.sections import TrustedKeyServer
from homeserver.core.clock import FakeClock
from homeserver.crypto.keys import ServerSigningKey, load_or_create_signing_key, server_keys_response
from homeserver.crypto.signing import sign_json
from homeserver.federation.backoff import DestinationBackoff, NotRetryingDestination
from homeserver.federation.client import RequestSendFailed
from homeserver.federation.keyring import FederationKeyring, KeyResponseError, parse_key_response
from homeserver.federation.keyserver import KeyServer
from homeserver.storage.database import Database
from homeserver.storage.migrations import migrate
from homeserver.storage.stores.federation import DestinationStore, ServerKeyStore

NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000
REMOTE = "remote.example"
NOTARY = "notary.example"
US = "us.example"


@pytest.fixture
async def mdb(db: Database) -> AsyncIterator[Database]:
    await migrate(db)
    yield db


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, ServerSigningKey]:
    return {
        name: load_or_create_signing_key(str(tmp_path / f"{name}.key")) for name in (REMOTE, NOTARY, US, "x")
    }


class FakeClient:
    """Answers key requests from canned responses; records what was asked."""

    def __init__(self) -> None:
        self.server: dict[str, Any] = {}  # server name -> /_matrix/key/v2/server body
        self.notary: dict[str, Any] = {}  # notary name -> /_matrix/key/v2/query body
        self.calls: list[tuple[str, str]] = []

    async def get_json(self, destination: str, path: str, *a: Any, **kw: Any) -> Any:
        self.calls.append(("GET", destination))
        if destination not in self.server:
            raise RequestSendFailed(destination, "unreachable")
        return copy.deepcopy(self.server[destination])

    async def post_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any:
        self.calls.append(("POST", destination))
        if destination not in self.notary:
            raise RequestSendFailed(destination, "unreachable")
        return copy.deepcopy(self.notary[destination])


def keyring(
    mdb: Database, client: FakeClient, clock: FakeClock, notaries: tuple[TrustedKeyServer, ...] = ()
) -> FederationKeyring:
    return FederationKeyring(
        ServerKeyStore(mdb),
        client,  # type: ignore[arg-type]
        clock,
        server_name=US,
        own_keys={},
        trusted_key_servers=notaries,
    )


async def test_direct_fetch_checks_self_signature_and_caches(
    mdb: Database, keys: dict[str, ServerSigningKey]
) -> None:
    clock, client = FakeClock(NOW), FakeClient()
    key = keys[REMOTE]
    client.server[REMOTE] = server_keys_response(REMOTE, key, NOW + DAY)
    ring = keyring(mdb, client, clock)
    found = await ring.get_verify_key(REMOTE, key.key_id, valid_at_ts=NOW)
    assert found is not None and found.encode() == key.verify_key.encode()
    # cached: no second fetch
    assert await ring.get_verify_key(REMOTE, key.key_id, valid_at_ts=NOW + 1000) is not None
    assert client.calls == [("GET", REMOTE)]
    # the cached response survives a new keyring (it is in the database)
    assert await keyring(mdb, FakeClient(), clock).get_verify_key(REMOTE, key.key_id, valid_at_ts=NOW)


async def test_expired_keys_are_refetched(mdb: Database, keys: dict[str, ServerSigningKey]) -> None:
    clock, client = FakeClock(NOW), FakeClient()
    key = keys[REMOTE]
    client.server[REMOTE] = server_keys_response(REMOTE, key, NOW + 1000)
    ring = keyring(mdb, client, clock)
    assert await ring.get_verify_key(REMOTE, key.key_id, valid_at_ts=NOW) is not None
    # Needed past valid_until_ts: fetched again; the server still says +1000 → unusable.
    assert await ring.get_verify_key(REMOTE, key.key_id, valid_at_ts=NOW + 5000) is None
    assert client.calls == [("GET", REMOTE), ("GET", REMOTE)]
    client.server[REMOTE] = server_keys_response(REMOTE, key, NOW + DAY)
    clock.advance(60_000)  # past the negative cache
    assert await ring.get_verify_key(REMOTE, key.key_id, valid_at_ts=NOW + 5000) is not None


async def test_old_verify_keys_valid_until_expiry(mdb: Database, keys: dict[str, ServerSigningKey]) -> None:
    clock, client = FakeClock(NOW), FakeClient()
    old = keys["x"]
    body = server_keys_response(
        REMOTE, keys[REMOTE], NOW + DAY, {old.key_id: {"key": old.verify_key_base64, "expired_ts": NOW - 10}}
    )
    client.server[REMOTE] = body
    ring = keyring(mdb, client, clock)
    assert await ring.get_verify_key(REMOTE, old.key_id, valid_at_ts=NOW - 20) is not None
    assert await ring.get_verify_key(REMOTE, old.key_id, valid_at_ts=NOW) is None


def test_bad_responses_are_refused(keys: dict[str, ServerSigningKey]) -> None:
    good = server_keys_response(REMOTE, keys[REMOTE], NOW + DAY)
    forged = server_keys_response(REMOTE, keys[REMOTE], NOW + DAY)
    forged["verify_keys"] = {keys[REMOTE].key_id: {"key": keys["x"].verify_key_base64}}  # not its signer
    unsigned = {k: v for k, v in good.items() if k != "signatures"}
    cases = [
        (good, "other.example"),  # wrong server_name
        (forged, REMOTE),
        (unsigned, REMOTE),
        ({**good, "valid_until_ts": "soon"}, REMOTE),
        ([], REMOTE),
    ]
    for body, name in cases:
        with pytest.raises(KeyResponseError):
            parse_key_response(body, name, REMOTE, NOW)
    assert len(parse_key_response(good, REMOTE, REMOTE, NOW)) == 1


async def test_forged_direct_response_is_not_stored(mdb: Database, keys: dict[str, ServerSigningKey]) -> None:
    clock, client = FakeClock(NOW), FakeClient()
    body = server_keys_response(REMOTE, keys["x"], NOW + DAY)  # signed by x, claims to be REMOTE...
    body["signatures"] = {REMOTE: body["signatures"][REMOTE]}
    body["verify_keys"] = {keys["x"].key_id: {"key": keys[REMOTE].verify_key_base64}}  # ...with REMOTE's key
    client.server[REMOTE] = body
    ring = keyring(mdb, client, clock)
    assert await ring.get_verify_key(REMOTE, keys["x"].key_id, valid_at_ts=NOW) is None
    assert await ServerKeyStore(mdb).list_server_keys(REMOTE) == []


async def test_notary_with_configured_key(mdb: Database, keys: dict[str, ServerSigningKey]) -> None:
    clock, client = FakeClock(NOW), FakeClient()
    remote_body = server_keys_response(REMOTE, keys[REMOTE], NOW + DAY)
    client.notary[NOTARY] = {"server_keys": [sign_json(remote_body, NOTARY, keys[NOTARY])]}
    trusted = TrustedKeyServer(NOTARY, {keys[NOTARY].key_id: keys[NOTARY].verify_key_base64})
    ring = keyring(mdb, client, clock, (trusted,))
    assert await ring.get_verify_key(REMOTE, keys[REMOTE].key_id, valid_at_ts=NOW) is not None
    assert client.calls == [("POST", NOTARY)]  # the notary first, as Synapse; no direct fetch needed


async def test_notary_signature_is_required(mdb: Database, keys: dict[str, ServerSigningKey]) -> None:
    clock, client = FakeClock(NOW), FakeClient()
    remote_body = server_keys_response(REMOTE, keys[REMOTE], NOW + DAY)
    # signed by somebody else than the notary's configured key
    client.notary[NOTARY] = {"server_keys": [sign_json(remote_body, NOTARY, keys["x"])]}
    trusted = TrustedKeyServer(NOTARY, {keys[NOTARY].key_id: keys[NOTARY].verify_key_base64})
    ring = keyring(mdb, client, clock, (trusted,))
    # The notary's answer is refused; the direct fetch (unreachable here) is the fallback.
    assert await ring.get_verify_key(REMOTE, keys[REMOTE].key_id, valid_at_ts=NOW) is None
    assert client.calls == [("POST", NOTARY), ("GET", REMOTE)]
    # a reachable server is then asked directly
    client.server[REMOTE] = remote_body
    clock.advance(60_000)
    assert await ring.get_verify_key(REMOTE, keys[REMOTE].key_id, valid_at_ts=NOW) is not None


async def test_notary_without_configured_keys_uses_its_fetched_key(
    mdb: Database, keys: dict[str, ServerSigningKey]
) -> None:
    clock, client = FakeClock(NOW), FakeClient()
    remote_body = server_keys_response(REMOTE, keys[REMOTE], NOW + DAY)
    client.notary[NOTARY] = {"server_keys": [sign_json(remote_body, NOTARY, keys[NOTARY])]}
    client.server[NOTARY] = server_keys_response(NOTARY, keys[NOTARY], NOW + DAY)
    ring = keyring(mdb, client, clock, (TrustedKeyServer(NOTARY, None),))
    assert await ring.get_verify_key(REMOTE, keys[REMOTE].key_id, valid_at_ts=NOW) is not None
    assert ("GET", REMOTE) not in client.calls


async def test_key_server_serves_own_and_cached_keys(
    mdb: Database, keys: dict[str, ServerSigningKey]
) -> None:
    from signedjson.sign import verify_signed_json

    clock, client = FakeClock(NOW), FakeClient()
    client.server[REMOTE] = server_keys_response(REMOTE, keys[REMOTE], NOW + DAY)
    store = ServerKeyStore(mdb)
    ring = keyring(mdb, client, clock)
    server = KeyServer(US, keys[US], (), clock, store, ring, key_refresh_interval=DAY)
    own = server.own_keys()
    assert own["valid_until_ts"] == NOW + DAY and own["server_name"] == US
    verify_signed_json(own, US, keys[US].verify_key)

    answer = await server.query({REMOTE: {keys[REMOTE].key_id: {"minimum_valid_until_ts": NOW}}, US: {}})
    by_name = {r["server_name"]: r for r in answer}
    verify_signed_json(by_name[REMOTE], REMOTE, keys[REMOTE].verify_key)  # the origin's signature kept
    verify_signed_json(by_name[REMOTE], US, keys[US].verify_key)  # and ours added
    assert client.calls == [("GET", REMOTE)]
    await server.query({REMOTE: {}})  # cached now
    assert client.calls == [("GET", REMOTE)]
    # an unreachable server with nothing cached: no responses
    assert await server.query({"down.example": {}}) == []


async def test_backoff_grows_and_resets(mdb: Database) -> None:
    clock = FakeClock(NOW)
    backoff = DestinationBackoff(
        DestinationStore(mdb), clock, min_interval=10_000, multiplier=2, max_interval=35_000
    )
    dest = "down.example"
    await backoff.check(dest)
    intervals = []
    for _ in range(4):
        await backoff.record_failure(dest)
        retry = await DestinationStore(mdb).get_destination(dest)
        assert retry is not None
        intervals.append(retry.retry_interval)
        with pytest.raises(NotRetryingDestination):
            await backoff.check(dest)
        clock.advance(retry.retry_interval)
        await backoff.check(dest)  # due again
    assert intervals == [10_000, 20_000, 35_000, 35_000]
    # a restart (fresh object, same table) keeps backing off
    await backoff.record_failure(dest)
    fresh = DestinationBackoff(
        DestinationStore(mdb), clock, min_interval=10_000, multiplier=2, max_interval=35_000
    )
    with pytest.raises(NotRetryingDestination):
        await fresh.check(dest)
    await fresh.record_success(dest)
    await fresh.check(dest)
    stored = await DestinationStore(mdb).get_destination(dest)
    assert stored is not None and (stored.retry_interval, stored.failure_ts) == (0, None)
    await fresh.record_failure(dest)
    assert (await DestinationStore(mdb).get_destination(dest)).retry_interval == 10_000  # type: ignore[union-attr]


async def test_failed_fetches_are_not_repeated_at_once(
    mdb: Database, keys: dict[str, ServerSigningKey]
) -> None:
    clock, client = FakeClock(NOW), FakeClient()
    ring = keyring(mdb, client, clock)
    server = KeyServer(US, keys[US], (), clock, ServerKeyStore(mdb), ring, key_refresh_interval=DAY)
    assert await ring.get_verify_key(REMOTE, "ed25519:nope", valid_at_ts=NOW) is None
    assert await ring.get_verify_key(REMOTE, "ed25519:other", valid_at_ts=NOW) is None
    assert await server.query({REMOTE: {}}) == []
    assert client.calls == [("GET", REMOTE)]  # one fetch for all three
    clock.advance(31_000)
    await server.query({REMOTE: {}})
    assert client.calls == [("GET", REMOTE), ("GET", REMOTE)]
