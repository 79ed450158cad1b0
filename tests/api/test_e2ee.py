"""End-to-end encryption through the in-process app: concurrency of /keys/claim on both engines,
stream positions across restarts, device-list rules, key backup replacement rules, TURN config."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from canonicaljson import encode_canonical_json
from nacl.signing import SigningKey

from homeserver.app import create_app_from_config
from homeserver.container import Services, load_stream_positions
from homeserver.core.tokens import StreamToken
from homeserver.services.key_backup import is_better, parse_version
from homeserver.storage.stores.key_backup import RoomKey

from ..conftest import make_config, services_of
from .helpers import auth, register

V3 = "/_matrix/client/v3"
OTK = "signed_curve25519"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


class Device:
    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id, self.device_id = user_id, device_id
        self.key = SigningKey.generate()
        self.counter = 0

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        sig = _b64(self.key.sign(encode_canonical_json(data)).signature)
        return {**obj, "signatures": {self.user_id: {f"ed25519:{self.device_id}": sig}}}

    def device_keys(self) -> dict[str, Any]:
        return self.sign(
            {
                "user_id": self.user_id,
                "device_id": self.device_id,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {
                    f"ed25519:{self.device_id}": _b64(bytes(self.key.verify_key)),
                    f"curve25519:{self.device_id}": _b64(b"c" * 32),
                },
            }
        )

    def otks(self, n: int, fallback: bool = False) -> dict[str, Any]:
        out = {}
        for _ in range(n):
            self.counter += 1
            key: dict[str, Any] = {"key": _b64(self.counter.to_bytes(32, "big"))}
            if fallback:
                key["fallback"] = True
            out[f"{OTK}:K{self.counter:05d}"] = self.sign(key)
        return out


async def _post(client: Any, token: str, path: str, body: Any) -> Any:
    resp = await client.post(f"{V3}{path}", json=body, headers=auth(token))
    data = await resp.json()
    assert resp.status == 200, data
    return data


async def _setup_device(client: Any, otks: int = 0, fallback: bool = False) -> tuple[dict[str, Any], Device]:
    user = await register(client)
    device = Device(user["user_id"], user["device_id"])
    body: dict[str, Any] = {"device_keys": device.device_keys(), "one_time_keys": device.otks(otks)}
    if fallback:
        body["fallback_keys"] = device.otks(1, fallback=True)
    await _post(client, user["access_token"], "/keys/upload", body)
    return user, device


async def test_concurrent_claims_both_engines(any_engine_client: Any) -> None:
    client = any_engine_client
    owner, _ = await _setup_device(client, otks=30, fallback=True)
    claimer = await register(client)
    wanted = {"one_time_keys": {owner["user_id"]: {owner["device_id"]: OTK}}}
    results = await asyncio.gather(
        *(_post(client, claimer["access_token"], "/keys/claim", wanted) for _ in range(50))
    )
    keys = [next(iter(r["one_time_keys"][owner["user_id"]][owner["device_id"]].items())) for r in results]
    one_time = [k for k, v in keys if not v.get("fallback")]
    assert len(one_time) == 30 and len(set(one_time)) == 30
    assert sum(1 for _, v in keys if v.get("fallback")) == 20


async def test_bad_device_signature_rejected(client: Any) -> None:
    user = await register(client)
    device = Device(user["user_id"], user["device_id"])
    keys = device.device_keys()
    keys["keys"][f"curve25519:{user['device_id']}"] = _b64(b"d" * 32)  # changed after signing
    resp = await client.post(
        f"{V3}/keys/upload", json={"device_keys": keys}, headers=auth(user["access_token"])
    )
    assert resp.status == 400
    assert (await resp.json())["errcode"] == "M_INVALID_SIGNATURE"


async def test_too_many_one_time_keys(client: Any) -> None:
    user, device = await _setup_device(client)
    resp = await client.post(
        f"{V3}/keys/upload", json={"one_time_keys": device.otks(501)}, headers=auth(user["access_token"])
    )
    assert resp.status == 400
    # Nothing of the rejected batch was stored.
    counts = await _post(client, user["access_token"], "/keys/upload", {})
    assert counts["one_time_key_counts"][OTK] == 0


async def test_logout_removes_keys_and_notifies(client: Any) -> None:
    alice = await register(client)
    bob, _ = await _setup_device(client, otks=3)
    room = await _post(client, alice["access_token"], "/createRoom", {"preset": "public_chat"})
    await _post(client, bob["access_token"], f"/join/{room['room_id']}", {})
    services = services_of(client)
    before = services.notifier.current
    await _post(client, bob["access_token"], "/logout", {})
    after = services.notifier.current
    assert after.device_lists > before.device_lists
    changed, _ = await services.device_lists.changes_between(alice["user_id"], before, after)
    assert bob["user_id"] in changed
    query = await _post(client, alice["access_token"], "/keys/query", {"device_keys": {bob["user_id"]: []}})
    assert query["device_keys"][bob["user_id"]] == {}
    assert await services.e2e_store.key_counts(bob["user_id"], bob["device_id"]) == ({}, [])


async def test_user_signing_changes_only_visible_to_signer(client: Any) -> None:
    services = services_of(client)
    dl = services.device_lists
    alice = await register(client)
    bob = await register(client)
    room = await _post(client, alice["access_token"], "/createRoom", {"preset": "public_chat"})
    await _post(client, bob["access_token"], f"/join/{room['room_id']}", {})
    before = services.notifier.current
    await dl.record([(bob["user_id"], alice["user_id"])])  # e.g. alice signed bob's master key
    after = services.notifier.current
    assert (await dl.changes_between(alice["user_id"], before, after))[0] == {bob["user_id"]}
    assert (await dl.changes_between(bob["user_id"], before, after))[0] == set()


async def test_sync_device_lists_and_counts_over_r0(client: Any) -> None:
    alice = await register(client)
    resp = await client.get("/_matrix/client/r0/sync", headers=auth(alice["access_token"]))
    body = await resp.json()
    assert body["device_one_time_keys_count"] == {OTK: 0}
    assert body["device_unused_fallback_key_types"] == []
    since = body["next_batch"]
    bob, _ = await _setup_device(client, otks=1)
    room = await _post(client, alice["access_token"], "/createRoom", {"preset": "public_chat"})
    await _post(client, bob["access_token"], f"/join/{room['room_id']}", {})
    resp = await client.get(f"/_matrix/client/r0/sync?since={since}", headers=auth(alice["access_token"]))
    body = await resp.json()
    assert bob["user_id"] in body["device_lists"]["changed"]
    resp = await client.get(
        f"{V3}/keys/changes?from={since}", headers=auth(alice["access_token"])
    )  # `to` defaults to now
    assert bob["user_id"] in (await resp.json())["changed"]


async def test_to_device_position_survives_restart(tmp_path: Path, aiohttp_client: Any) -> None:
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app_from_config(config))
    alice = await register(client)
    bob = await register(client)
    for i in range(3):
        resp = await client.put(
            f"{V3}/sendToDevice/m.test/t{i}",
            json={"messages": {bob["user_id"]: {bob["device_id"]: {"i": i}}}},
            headers=auth(alice["access_token"]),
        )
        assert resp.status == 200
    resp = await client.get(f"{V3}/sync", headers=auth(bob["access_token"]))
    first = await resp.json()
    assert [e["content"]["i"] for e in first["to_device"]["events"]] == [0, 1, 2]
    token = StreamToken.parse(first["next_batch"])
    # Acknowledge: every message row is deleted...
    resp = await client.get(f"{V3}/sync?since={first['next_batch']}", headers=auth(bob["access_token"]))
    assert "to_device" not in await resp.json()
    await client.close()
    # ...yet after a restart the stream does not go back behind the token the client holds.
    services = await Services.create(config)
    try:
        assert await services.db.fetchval("SELECT COUNT(*) FROM device_inbox") == 0
        assert (await load_stream_positions(services.db))["to_device"] >= token.to_device
        assert services.notifier.current.to_device >= token.to_device
    finally:
        await services.stop()


async def test_to_device_batches_of_100(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    services = services_of(client)
    for i in range(150):
        await services.to_device.send(
            alice["user_id"], alice["device_id"], "m.test", f"t{i}", {bob["user_id"]: {"*": {"i": i}}}
        )
    resp = await client.get(f"{V3}/sync", headers=auth(bob["access_token"]))
    first = await resp.json()
    assert [e["content"]["i"] for e in first["to_device"]["events"]] == list(range(100))
    resp = await client.get(f"{V3}/sync?since={first['next_batch']}", headers=auth(bob["access_token"]))
    second = await resp.json()
    assert [e["content"]["i"] for e in second["to_device"]["events"]] == list(range(100, 150))


async def test_turn_server_with_shared_secret(tmp_path: Path, aiohttp_client: Any) -> None:
    config = make_config(tmp_path, turn_uris=["turn:turn.example.org?transport=udp"], turn_shared_secret="s3")
    client = await aiohttp_client(create_app_from_config(config))
    user = await register(client)
    resp = await client.get(f"{V3}/voip/turnServer", headers=auth(user["access_token"]))
    body = await resp.json()
    assert body["uris"] == ["turn:turn.example.org?transport=udp"] and body["ttl"] == 3600
    expected = base64.b64encode(hmac.new(b"s3", body["username"].encode(), hashlib.sha1).digest()).decode()
    assert body["password"] == expected and body["username"].endswith(":" + user["user_id"])


@pytest.mark.parametrize(
    ("new", "old", "better"),
    [
        ((0, 0, True), (0, 0, False), True),
        ((9, 9, True), (0, 0, False), True),
        ((0, 0, False), (9, 9, True), False),
        ((1, 5, False), (2, 0, False), True),
        ((2, 0, False), (1, 5, False), False),
        ((1, 0, False), (1, 1, False), True),
        ((1, 1, False), (1, 1, False), False),
    ],
)
def test_backup_replacement_rule(
    new: tuple[int, int, bool], old: tuple[int, int, bool], better: bool
) -> None:
    def key(t: tuple[int, int, bool]) -> RoomKey:
        return RoomKey("!r:x", "s", t[0], t[1], t[2], {})

    assert is_better(key(new), key(old)) is better


def test_parse_version() -> None:
    assert parse_version("12") == 12
    for bad in ("0", "-1", "abc", "1e3", "", "9" * 40, "\u00b9", "\u2460", "\u0661", " 1", "1_0"):
        assert parse_version(bad) is None


async def test_non_ascii_digit_backup_versions_are_not_found(any_engine_client: Any) -> None:
    """Found by the fuzzer: "¹".isdigit() is true but int("¹") raises, so these were 500s."""
    client = any_engine_client
    user = await register(client)
    headers = auth(user["access_token"])
    body = {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abc"}}
    created = await _post(client, user["access_token"], "/room_keys/version", body)
    for version in ("%C2%B9", "%E2%91%A0"):  # ¹ and ①
        for method, path in (
            ("GET", f"/room_keys/version/{version}"),
            ("DELETE", f"/room_keys/version/{version}"),
            ("GET", f"/room_keys/keys?version={version}"),
            ("DELETE", f"/room_keys/keys?version={version}"),
        ):
            resp = await client.request(method, f"{V3}{path}", headers=headers)
            assert resp.status == 404, (method, path, await resp.text())
            assert (await resp.json())["errcode"] == "M_NOT_FOUND"
    # The backup is untouched.
    resp = await client.get(f"{V3}/room_keys/version", headers=headers)
    assert (await resp.json())["version"] == created["version"]


@pytest.mark.parametrize(
    "signed",
    [
        {"signatures": 1},
        {"signatures": {"@who:test.local": "x"}},
        {"signatures": "x"},
        {"signatures": {"@SELF": 1}},
        {"signatures": {"@SELF": {"ed25519:X": 5}}},
    ],
)
async def test_malformed_signatures_are_failures_not_500(client: Any, signed: dict[str, Any]) -> None:
    """Found by the fuzzer: a non-object `signatures` made /keys/signatures/upload fail with a 500."""
    alice, device = await _setup_device(client)
    bob, _ = await _setup_device(client)
    token = alice["access_token"]
    me = alice["user_id"]
    signed = {
        k: ({me if u == "@SELF" else u: s for u, s in v.items()} if isinstance(v, dict) else v)
        for k, v in signed.items()
    }
    before = await _post(client, token, "/keys/query", {"device_keys": {me: []}})
    body = {me: {alice["device_id"]: {**device.device_keys(), **signed}}, bob["user_id"]: {"MASTER": signed}}
    resp = await client.post(f"{V3}/keys/signatures/upload", json=body, headers=auth(token))
    assert resp.status == 200, await resp.text()
    failures = (await resp.json())["failures"]
    assert set(failures) == {me, bob["user_id"]}
    assert all(isinstance(f["errcode"], str) for user in failures.values() for f in user.values())
    # Nothing was stored for the refused signatures.
    assert await _post(client, token, "/keys/query", {"device_keys": {me: []}}) == before
