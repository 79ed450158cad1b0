"""The federation sender against a fake remote server over TLS with X-Matrix checks: which
servers get an event, batching limits, retries with backoff on a test clock, restart with queued
PDUs (delivered once, the in-flight transaction id reused), catch-up after the queue cap, EDU
coalescing, never blocking a client, whitelist and ACL filtering, and to-device ordering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import generate_signing_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from homeserver.core.clock import FakeClock
from homeserver.crypto.keys import load_or_create_signing_key
from homeserver.federation.sender.metrics import pending_edus, pending_pdus, transactions_failed

from ..pg import create_database, drop_database, require_postgres
from .federation_sender_helpers import (
    FakeRemote,
    auth,
    fed_config,
    register,
    room_with_remote_member,
    send_text,
    settle,
    start_remote,
    start_server,
)


@pytest.fixture
async def remote(tmp_path: Path) -> AsyncIterator[tuple[FakeRemote, Path]]:
    # Our signing key is made first, so the fake remote can check our X-Matrix signatures.
    our_key = load_or_create_signing_key(str(tmp_path / "signing.key"))
    fake, runner, ca = await start_remote(tmp_path, our_key)
    try:
        yield fake, ca
    finally:
        fake.release.set()
        await runner.cleanup()
    assert fake.spec_failures == []
    assert fake.auth_failures == 0


def _config(tmp_path: Path, ca: Path, **extra: Any) -> Any:
    return fed_config(tmp_path, ca, signing_key_path=str(tmp_path / "signing.key"), **extra)


@pytest.fixture(params=["sqlite", "postgres"])
async def both_engines(
    request: pytest.FixtureRequest, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> AsyncIterator[Any]:
    """A config on each engine for the tests that touch most of the SQL."""
    _, ca = remote
    key = str(tmp_path / "signing.key")
    if request.param == "sqlite":
        yield fed_config(tmp_path, ca, signing_key_path=key)
        return
    await require_postgres()
    name = await create_database()
    try:
        yield fed_config(tmp_path, ca, "postgres", name, signing_key_path=key)
    finally:
        await drop_database(name)


def _device_keys(user: str, device: str, n: int) -> dict[str, Any]:
    key = generate_signing_key(device)
    body = {
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": {
            f"ed25519:{device}": encode_base64(key.verify_key.encode()),
            f"curve25519:{device}": f"c{n}",
        },
    }
    key.version = device
    return dict(sign_json(body, user, key))


def _to_device(message_id: str) -> dict[str, Any]:
    return {"sender": "@a:test.local", "type": "m.test", "message_id": message_id, "messages": {}}


def _gauge(gauge: Any, destination: str) -> float | None:
    [family] = list(gauge.collect())
    values = {s.labels["destination"]: s.value for s in family.samples}
    return values.get(destination)


async def _rows(services: Any, sql: str, *args: Any) -> list[Any]:
    return list(await services.db.fetch(sql, *args))


async def test_local_events_reach_the_servers_in_the_room(
    aiohttp_client: Any, remote: tuple[FakeRemote, Path], both_engines: Any
) -> None:
    fake, _ = remote
    client, services = await start_server(aiohttp_client, both_engines)
    alice = await register(client)
    token = alice["access_token"]
    # a room of local users only: nothing goes anywhere
    resp = await client.post("/_matrix/client/v3/createRoom", json={}, headers=auth(token))
    lonely = (await resp.json())["room_id"]
    await send_text(client, token, lonely, "nobody else here")
    room_id, _bob = await room_with_remote_member(client, services, fake, token)
    await send_text(client, token, room_id, "hello bob")
    await settle(services)
    assert fake.auth_failures == 0
    assert fake.bodies() == ["hello bob"]
    [txn] = fake.received
    assert txn.body["origin"] == "test.local"
    assert isinstance(txn.body["origin_server_ts"], int)
    pdu = txn.pdus[0]
    assert pdu["room_id"] == room_id and pdu["sender"] == alice["user_id"]
    assert "signatures" in pdu and "hashes" in pdu and "unsigned" not in pdu
    # bob's own join is not ours to send; the queue is empty once acknowledged
    assert await _rows(services, "SELECT * FROM federation_pdu_queue") == []
    row = await services.db.fetchrow(
        "SELECT last_successful_stream_ordering, txn_id FROM federation_destination_queues"
        " WHERE destination = $1",
        fake.name,
    )
    assert row is not None and row[0] is not None and row[1] is None


async def test_batches_of_at_most_50_pdus_and_100_edus(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    clock = FakeClock()
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca), clock)
    sender = services.federation_sender
    assert sender is not None
    token = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    fake.mode = "fail"
    await send_text(client, token, room_id, "first")
    await settle(services)
    assert fake.attempts and not fake.received
    for i in range(119):
        await send_text(client, token, room_id, f"m{i}")
    for i in range(150):
        await sender.send_edu(fake.name, "m.direct_to_device", _to_device(f"x{i}"))
    await settle(services)
    assert _gauge(pending_pdus, fake.name) == 120
    assert _gauge(pending_edus, fake.name) == 150
    fake.mode = "ok"
    clock.advance(3600 * 1000)
    sender.wake_destination(fake.name)
    await settle(services)
    assert fake.bodies() == ["first"] + [f"m{i}" for i in range(119)]  # in order, each once
    assert _gauge(pending_pdus, fake.name) is None and _gauge(pending_edus, fake.name) is None
    assert all(len(r.pdus) <= 50 and len(r.edus) <= 100 for r in fake.received)
    assert max(len(r.pdus) for r in fake.received) == 50
    assert max(len(r.edus) for r in fake.received) == 100
    ids = [e["message_id"] for e in fake.edus_of("m.direct_to_device")]
    assert ids == [f"x{i}" for i in range(150)]
    assert len({r.txn_id for r in fake.received}) == len(fake.received)


async def test_retry_after_failure_with_backoff(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    clock = FakeClock()
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca), clock)
    sender = services.federation_sender
    assert sender is not None
    token = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    fake.mode = "fail"
    failed = transactions_failed.labels("retry")._value.get()
    await send_text(client, token, room_id, "try me")
    await settle(services)
    assert len(fake.attempts) == 1
    assert transactions_failed.labels("retry")._value.get() == failed + 1
    retry = await services.destinations.get(fake.name)
    assert retry is not None and retry.retry_interval == 10 * 60 * 1000
    # Still backing off: waking does not send.
    fake.mode = "ok"
    sender.wake_destination(fake.name)
    await settle(services)
    assert len(fake.attempts) == 1
    # A second failure doubles the interval.
    fake.mode = "fail"
    clock.advance(10 * 60 * 1000)
    sender.wake_destination(fake.name)
    await settle(services)
    assert len(fake.attempts) == 2
    retry = await services.destinations.get(fake.name)
    assert retry is not None and retry.retry_interval == 20 * 60 * 1000
    fake.mode = "ok"
    clock.advance(20 * 60 * 1000)
    sender.wake_destination(fake.name)
    await settle(services)
    # The same transaction each time, delivered once; the backoff is reset.
    assert fake.attempts == [fake.attempts[0]] * 3
    assert fake.bodies() == ["try me"]
    retry = await services.destinations.get(fake.name)
    assert retry is not None and retry.retry_interval == 0


async def test_restart_with_queued_pdus_delivers_them_once(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    clock = FakeClock()
    config = _config(tmp_path, ca)
    client, services = await start_server(aiohttp_client, config, clock)
    token = (await register(client, "alice"))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    fake.mode = "fail"
    for i in range(3):
        await send_text(client, token, room_id, f"before restart {i}")
    await settle(services)
    in_flight = fake.attempts[-1]
    await client.close()

    # Restarted while the destination still backs off; it comes back later.
    fake.mode = "ok"
    clock.advance(3600 * 1000)
    client, services = await start_server(aiohttp_client, config, clock)
    await settle(services)
    assert fake.bodies() == [f"before restart {i}" for i in range(3)]
    assert fake.received[0].txn_id == in_flight  # the retry reuses the persisted id
    # A transaction seen before is deduplicated by the receiver, and nothing is queued twice.
    await send_text(client, token, room_id, "after restart")
    await settle(services)
    assert fake.bodies() == [f"before restart {i}" for i in range(3)] + ["after restart"]
    await client.close()
    client, services = await start_server(aiohttp_client, config, clock)
    await settle(services)
    assert len(fake.bodies()) == 4


async def test_rows_missed_while_stopped_are_queued_at_start(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    """Events committed while the sender was not following (its persisted position is behind)
    are read back with rows_since."""
    fake, ca = remote
    config = _config(tmp_path, ca)
    client, services = await start_server(aiohttp_client, config)
    sender = services.federation_sender
    assert sender is not None
    token = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    await settle(services)
    await sender.events_follower.stop()  # as if the process died right after these commits
    await send_text(client, token, room_id, "unseen 1")
    await send_text(client, token, room_id, "unseen 2")
    await client.close()
    client, services = await start_server(aiohttp_client, config)
    await settle(services)
    assert fake.bodies() == ["unseen 1", "unseen 2"]


async def test_catch_up_after_the_queue_cap(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    clock = FakeClock()
    client, services = await start_server(
        aiohttp_client, _config(tmp_path, ca, federation={"max_queued_pdus": 5}), clock
    )
    sender = services.federation_sender
    assert sender is not None
    token = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    fake.mode = "fail"
    for i in range(8):
        await send_text(client, token, room_id, f"missed {i}")
    await settle(services)
    # Past the cap the queue is dropped: storage stays bounded.
    assert fake.name in sender.ctx.catching_up
    queued = await _rows(
        services, "SELECT COUNT(*) FROM federation_pdu_queue WHERE destination = $1", fake.name
    )
    assert int(queued[0][0]) <= 5
    fake.mode = "ok"
    clock.advance(3600 * 1000)
    sender.wake_destination(fake.name)
    await settle(services)
    # The transaction in flight at the failure is retried as it was; then only the latest event
    # of the room (its forward extremity) goes out - the remote fetches the gap with
    # get_missing_events - and normal sending resumes.
    assert fake.bodies() == ["missed 0", "missed 7"]
    assert fake.name not in sender.ctx.catching_up
    await send_text(client, token, room_id, "live again")
    await settle(services)
    assert fake.bodies()[-1] == "live again"


async def test_rejected_transaction_is_dropped_and_caught_up(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    clock = FakeClock()
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca), clock)
    sender = services.federation_sender
    assert sender is not None
    token = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    fake.mode = "reject"
    await send_text(client, token, room_id, "refused")
    await settle(services)
    assert len(fake.attempts) == 1
    assert await _rows(services, "SELECT * FROM federation_pdu_queue") == []
    # The server answers: its other endpoints are not backed off, only this queue pauses.
    retry = await services.destinations.get(fake.name)
    assert retry is None or retry.retry_interval == 0
    assert sender.is_paused(fake.name)
    fake.mode = "ok"
    sender.wake_destination(fake.name)
    await settle(services)
    assert len(fake.attempts) == 1
    clock.advance(3600 * 1000)
    sender.wake_destination(fake.name)
    await settle(services)
    assert fake.bodies() == ["refused"]  # re-sent by catch-up under a new transaction id
    assert fake.received[0].txn_id != fake.attempts[0]


async def test_ephemeral_edus_coalesce_by_key(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    _client, services = await start_server(aiohttp_client, _config(tmp_path, ca))
    sender = services.federation_sender
    assert sender is not None

    # No await point between these: the queue's task has not run yet, so the later ones replace
    # the earlier ones with the same key.
    def typing(user: str, flag: bool) -> dict[str, Any]:
        return {"room_id": "!r:x", "user_id": user, "typing": flag}

    await sender.send_edu(fake.name, "m.typing", typing("@a:test.local", True), key="!r:x @a")
    await sender.send_edu(fake.name, "m.typing", typing("@b:test.local", True), key="!r:x @b")
    await sender.send_edu(fake.name, "m.typing", typing("@a:test.local", False), key="!r:x @a")
    await sender.send_edu(fake.name, "m.presence", {"push": []})
    await sender.send_edu(fake.name, "m.presence", {"push": []})  # no key: both kept
    await sender.send_edu(services.config.server_name, "m.typing", {}, key="x")  # never ourselves
    await sender.send_edu("not a server name!", "m.typing", {}, key="x")
    assert services.config.server_name not in sender.queues and "not a server name!" not in sender.queues
    await settle(services)
    typing = fake.edus_of("m.typing")
    assert sorted((t["user_id"], t["typing"]) for t in typing) == [
        ("@a:test.local", False),
        ("@b:test.local", True),
    ]
    assert len(fake.edus_of("m.presence")) == 2


async def test_persisted_edus_coalesce_by_key(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    clock = FakeClock()
    _client, services = await start_server(aiohttp_client, _config(tmp_path, ca), clock)
    sender = services.federation_sender
    assert sender is not None
    fake.mode = "fail"
    await sender.send_edu(fake.name, "m.direct_to_device", _to_device("first"))
    await settle(services)
    await sender.send_edu(fake.name, "m.signing_key_update", {"user_id": "@a:test.local", "v": 1}, key="@a")
    await sender.send_edu(fake.name, "m.signing_key_update", {"user_id": "@a:test.local", "v": 2}, key="@a")
    await settle(services)
    fake.mode = "ok"
    clock.advance(3600 * 1000)
    sender.wake_destination(fake.name)
    await settle(services)
    assert [e["v"] for e in fake.edus_of("m.signing_key_update")] == [2]
    assert [e["message_id"] for e in fake.edus_of("m.direct_to_device")] == ["first"]


async def test_sending_never_blocks_the_local_sender(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca))
    token = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    fake.mode = "hang"
    await send_text(client, token, room_id, "into the void")
    sender = services.federation_sender
    assert sender is not None
    await sender.events_follower.drained()
    # The remote never answers; the client still gets every answer (a hang would time out here).
    for i in range(3):
        await asyncio.wait_for(send_text(client, token, room_id, f"still here {i}"), timeout=30)
    resp = await asyncio.wait_for(client.get("/_matrix/client/v3/sync", headers=auth(token)), timeout=30)
    assert resp.status == 200
    queue = sender.queues[fake.name]
    assert queue.active  # the one transaction in flight, nothing else sent meanwhile
    assert len(fake.attempts) == 1


async def test_whitelist_and_server_acl(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    client, services = await start_server(
        aiohttp_client, _config(tmp_path, ca, federation_domain_whitelist=["other.example"])
    )
    token = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    await send_text(client, token, room_id, "not for you")
    sender = services.federation_sender
    assert sender is not None
    await sender.send_edu(fake.name, "m.direct_to_device", _to_device("no"))
    await settle(services)
    assert fake.attempts == []
    assert await _rows(services, "SELECT * FROM federation_pdu_queue") == []
    assert await _rows(services, "SELECT * FROM federation_edu_queue") == []
    await client.close()

    # No whitelist, but the room's ACL denies the remote's host.
    tmp2 = tmp_path / "second"
    tmp2.mkdir()
    client, services = await start_server(
        aiohttp_client,
        fed_config(tmp2, ca, signing_key_path=str(tmp_path / "signing.key")),
    )
    token = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/state/m.room.server_acl",
        json={"allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": True},
        headers=auth(token),
    )
    assert resp.status == 200, await resp.json()
    await settle(services)
    before = len(fake.received)
    await send_text(client, token, room_id, "acl says no")
    await settle(services)
    assert len(fake.received) == before
    assert "acl says no" not in fake.bodies()


async def test_removed_target_server_hears_of_it(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    """A ban of a remote user who is not in the room still goes to the user's server."""
    fake, ca = remote
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca))
    token = (await register(client))["access_token"]
    resp = await client.post(
        "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth(token)
    )
    room_id = (await resp.json())["room_id"]
    target = f"@mallory:{fake.name}"
    resp = await client.post(
        f"/_matrix/client/v3/rooms/{room_id}/ban", json={"user_id": target}, headers=auth(token)
    )
    assert resp.status == 200, await resp.json()
    await settle(services)
    members = [p for r in fake.received for p in r.pdus if p["type"] == "m.room.member"]
    assert [(m["state_key"], m["content"]["membership"]) for m in members] == [(target, "ban")]


async def test_to_device_for_remote_users_in_order(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    clock = FakeClock()
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca), clock)
    alice = await register(client)
    token = alice["access_token"]
    bob = f"@bob:{fake.name}"
    fake.mode = "fail"
    for i in range(5):
        resp = await client.put(
            f"/_matrix/client/v3/sendToDevice/m.test/txn{i}",
            json={"messages": {bob: {"DEV": {"n": i}}, f"@carol:{fake.name}": {"*": {"n": i}}}},
            headers=auth(token),
        )
        assert resp.status == 200
    # The client retries one request: not queued twice.
    resp = await client.put(
        "/_matrix/client/v3/sendToDevice/m.test/txn4",
        json={"messages": {bob: {"DEV": {"n": 4}}}},
        headers=auth(token),
    )
    assert resp.status == 200
    await settle(services)
    fake.mode = "ok"
    clock.advance(3600 * 1000)
    sender = services.federation_sender
    assert sender is not None
    sender.wake_destination(fake.name)
    await settle(services)
    edus = fake.edus_of("m.direct_to_device")
    assert [e["messages"][bob]["DEV"]["n"] for e in edus] == [0, 1, 2, 3, 4]
    for e in edus:  # one EDU per destination and request, both users in it
        assert e["sender"] == alice["user_id"] and e["type"] == "m.test"
        assert isinstance(e["message_id"], str) and e["message_id"]
        assert set(e["messages"]) == {bob, f"@carol:{fake.name}"}
    assert len({e["message_id"] for e in edus}) == 5


async def test_typing_receipts_and_presence_go_to_the_room(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca, presence={"enabled": True}))
    alice = await register(client)
    token, user = alice["access_token"], alice["user_id"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    event_id = await send_text(client, token, room_id, "read me")
    await settle(services)
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/typing/{user}", json={"typing": True, "timeout": 30000},
        headers=auth(token),
    )  # fmt: skip
    assert resp.status == 200
    await settle(services)
    resp = await client.post(f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{event_id}", json={},
                             headers=auth(token))  # fmt: skip
    assert resp.status == 200
    resp = await client.post(f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read.private/{event_id}", json={},
                             headers=auth(token))  # fmt: skip
    resp = await client.put(
        f"/_matrix/client/v3/presence/{user}/status", json={"presence": "online", "status_msg": "hi"},
        headers=auth(token),
    )  # fmt: skip
    assert resp.status == 200
    await settle(services)
    typing = fake.edus_of("m.typing")
    assert {"room_id": room_id, "user_id": user, "typing": True} in typing
    receipts = fake.edus_of("m.receipt")
    assert len(receipts) == 1  # the private one stays here
    read = receipts[0][room_id]["m.read"][user]
    assert read["event_ids"] == [event_id] and isinstance(read["data"]["ts"], int)
    pushes = [p for e in fake.edus_of("m.presence") for p in e["push"]]
    assert any(
        p["user_id"] == user and p["presence"] == "online" and p.get("status_msg") == "hi" for p in pushes
    )


async def test_device_list_and_signing_key_updates(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca))
    alice = await register(client)
    token, user, device = alice["access_token"], alice["user_id"], alice["device_id"]
    await room_with_remote_member(client, services, fake, token)
    await settle(services)

    def device_keys(n: int) -> dict[str, Any]:
        return _device_keys(user, device, n)

    uploaded: dict[str, Any] = {}
    for n in range(2):
        uploaded = device_keys(n)
        resp = await client.post("/_matrix/client/v3/keys/upload", json={"device_keys": uploaded},
                                 headers=auth(token))  # fmt: skip
        assert resp.status == 200, await resp.json()
    await settle(services)
    updates = fake.edus_of("m.device_list_update")
    assert [u["device_id"] for u in updates] == [device, device]
    assert updates[0]["prev_id"] == [] and updates[1]["prev_id"] == [updates[0]["stream_id"]]
    assert updates[1]["stream_id"] > updates[0]["stream_id"]
    assert updates[1]["keys"]["keys"][f"curve25519:{device}"] == "c1"

    # New cross-signing keys: one m.signing_key_update with the public keys.
    master_key, self_key = generate_signing_key("m"), generate_signing_key("s")
    master_pub = encode_base64(master_key.verify_key.encode())
    self_pub = encode_base64(self_key.verify_key.encode())
    master = {"user_id": user, "usage": ["master"], "keys": {f"ed25519:{master_pub}": master_pub}}
    master_key.version = master_pub
    self_signing = sign_json(
        {"user_id": user, "usage": ["self_signing"], "keys": {f"ed25519:{self_pub}": self_pub}},
        user,
        master_key,
    )
    resp = await client.post(
        "/_matrix/client/v3/keys/device_signing/upload",
        json={"master_key": master, "self_signing_key": self_signing},
        headers=auth(token),
    )
    assert resp.status == 200, await resp.json()
    await settle(services)
    [signing] = fake.edus_of("m.signing_key_update")
    assert signing["user_id"] == user
    assert signing["master_key"]["keys"] == master["keys"]
    assert signing["self_signing_key"]["keys"] == self_signing["keys"]
    assert len(fake.edus_of("m.device_list_update")) == 2

    # Signing the device with the self-signing key: the device's keys go out with the signature.
    self_key.version = self_pub
    signed_device = sign_json({k: v for k, v in uploaded.items() if k != "signatures"}, user, self_key)
    signed_device["signatures"][user].update(uploaded["signatures"][user])
    resp = await client.post(
        "/_matrix/client/v3/keys/signatures/upload", json={user: {device: signed_device}}, headers=auth(token)
    )
    body = await resp.json()
    assert resp.status == 200 and body["failures"] == {}, body
    await settle(services)
    signed_update = fake.edus_of("m.device_list_update")[-1]
    assert signed_update["device_id"] == device and signed_update["prev_id"] == [updates[1]["stream_id"]]
    assert f"ed25519:{self_pub}" in signed_update["keys"]["signatures"][user]
    assert len(fake.edus_of("m.signing_key_update")) == 1

    # Logging the device out announces its deletion, chained to the last update.
    resp = await client.post("/_matrix/client/v3/logout", headers=auth(token))
    assert resp.status == 200
    await settle(services)
    last = fake.edus_of("m.device_list_update")[-1]
    assert last["deleted"] is True and last["device_id"] == device
    assert last["prev_id"] == [signed_update["stream_id"]]


async def test_stop_leaves_work_persisted(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca))
    token = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    fake.mode = "fail"
    await send_text(client, token, room_id, "pending")
    await settle(services)
    await client.close()
    assert services.federation_sender is not None
    assert not any(q.active for q in services.federation_sender.queues.values())


async def test_destinations_admin_api(
    aiohttp_client: Any, remote: tuple[FakeRemote, Path], both_engines: Any
) -> None:
    fake, _ = remote
    clock = FakeClock()
    client, services = await start_server(aiohttp_client, both_engines, clock)
    admin = (await register(client, "admin", admin=True))["access_token"]
    user = (await register(client))["access_token"]
    room_id, _ = await room_with_remote_member(client, services, fake, admin)
    fake.mode = "fail"
    await send_text(client, admin, room_id, "queued")
    await settle(services)
    base = "/_synapse/admin/v1/federation/destinations"

    resp = await client.get(base, headers=auth(admin))
    body = await resp.json()
    assert resp.status == 200, body
    assert body["total"] == 1 and "next_token" not in body
    [entry] = body["destinations"]
    assert entry["destination"] == fake.name
    assert entry["retry_interval"] == 10 * 60 * 1000 and entry["failure_ts"] == clock.time_ms()
    assert entry["last_successful_stream_ordering"] is None
    resp = await client.get(base, params={"destination": "no-such"}, headers=auth(admin))
    assert (await resp.json())["total"] == 0
    resp = await client.get(base, params={"limit": "0"}, headers=auth(admin))
    assert (await resp.json())["next_token"] == "0"

    path = f"{base}/{fake.name}"
    resp = await client.get(path, headers=auth(admin))
    assert (await resp.json()) == entry
    resp = await client.get(f"{path}/rooms", headers=auth(admin))
    rooms = await resp.json()
    assert [r["room_id"] for r in rooms["rooms"]] == [room_id] and rooms["total"] == 1

    # reset_connection: the backoff is cleared and the queue is sent at once.
    fake.mode = "ok"
    resp = await client.post(f"{path}/reset_connection", json={}, headers=auth(admin))
    assert (resp.status, await resp.json()) == (200, {})
    await settle(services)
    assert fake.bodies() == ["queued"]
    resp = await client.get(path, headers=auth(admin))
    after = await resp.json()
    assert after["retry_interval"] == 0 and after["last_successful_stream_ordering"] is not None
    # nothing to reset any more
    resp = await client.post(f"{path}/reset_connection", json={}, headers=auth(admin))
    assert resp.status == 400

    unknown = f"{base}/unknown.example"
    for method, url in [
        ("GET", unknown),
        ("POST", f"{unknown}/reset_connection"),
        ("GET", f"{unknown}/rooms"),
    ]:
        resp = await client.request(method, url, json={} if method == "POST" else None, headers=auth(admin))
        assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    for params in ({"order_by": "nope"}, {"from": "-1"}, {"limit": "x"}, {"dir": "sideways"}):
        resp = await client.get(base, params=params, headers=auth(admin))
        assert (resp.status, (await resp.json())["errcode"]) == (400, "M_INVALID_PARAM"), params
    resp = await client.get(base, headers=auth(user))
    assert resp.status == 403
    resp = await client.get(base)
    assert resp.status == 401


async def test_device_updates_queued_for_a_dead_server_replace_each_other(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    """Storage for a server that is down stays at one update per device; the survivor names the
    replaced one in prev_id, which the receiver never saw, so it resyncs the list."""
    fake, ca = remote
    clock = FakeClock()
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca), clock)
    sender = services.federation_sender
    assert sender is not None
    alice = await register(client)
    token, user, device = alice["access_token"], alice["user_id"], alice["device_id"]
    await room_with_remote_member(client, services, fake, token)
    await settle(services)
    fake.mode = "fail"
    await sender.send_edu(fake.name, "m.direct_to_device", _to_device("blocker"))  # takes the txn in flight
    await settle(services)
    for n in range(5):
        resp = await client.post(
            "/_matrix/client/v3/keys/upload",
            json={"device_keys": _device_keys(user, device, n)},
            headers=auth(token),
        )
        assert resp.status == 200
    await settle(services)
    queued = await _rows(
        services, "SELECT COUNT(*) FROM federation_edu_queue WHERE edu_type = 'm.device_list_update'"
    )
    assert int(queued[0][0]) == 1
    fake.mode = "ok"
    clock.advance(3600 * 1000)
    sender.wake_destination(fake.name)
    await settle(services)
    [update] = fake.edus_of("m.device_list_update")
    assert update["keys"]["keys"][f"curve25519:{device}"] == "c4"
    assert update["prev_id"] and update["prev_id"][0] < update["stream_id"]


async def test_a_change_of_several_devices_makes_the_receiver_resync(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    """Devices removed together share one device-list position: one update with an empty
    prev_id goes out (a receiver ignores a stream_id it has seen, and resyncs on an empty prev_id)."""
    fake, ca = remote
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca))
    alice = await register(client, "multi")
    token = alice["access_token"]
    resp = await client.post(
        "/_matrix/client/v3/login",
        json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "multi"},
              "password": "pass-word-1"},
    )  # fmt: skip
    assert resp.status == 200
    second = (await resp.json())["device_id"]
    await room_with_remote_member(client, services, fake, token)
    await settle(services)
    resp = await client.post("/_matrix/client/v3/logout/all", headers=auth(token))
    assert resp.status == 200
    await settle(services)
    [update] = fake.edus_of("m.device_list_update")
    assert update["prev_id"] == [] and update["deleted"] is True
    assert update["device_id"] in {alice["device_id"], second}
    assert update["stream_id"] == services.device_lists_stream.current


async def test_a_server_joining_gets_the_presence_of_our_users(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    fake, ca = remote
    client, services = await start_server(aiohttp_client, _config(tmp_path, ca, presence={"enabled": True}))
    alice = await register(client)
    token, user = alice["access_token"], alice["user_id"]
    resp = await client.put(
        f"/_matrix/client/v3/presence/{user}/status", json={"presence": "online"}, headers=auth(token)
    )
    assert resp.status == 200
    # another local user, offline, joins too: only who is not offline is sent
    offline = await register(client)
    await settle(services)
    assert fake.attempts == []  # nobody to tell yet
    room_id, _ = await room_with_remote_member(client, services, fake, token)
    resp = await client.post(
        f"/_matrix/client/v3/rooms/{room_id}/join", json={}, headers=auth(offline["access_token"])
    )
    assert resp.status == 200
    await settle(services)
    pushes = [p for e in fake.edus_of("m.presence") for p in e["push"]]
    assert [(p["user_id"], p["presence"]) for p in pushes] == [(user, "online")]


async def test_to_device_through_the_outbox_when_a_worker_sends(
    aiohttp_client: Any, tmp_path: Path, remote: tuple[FakeRemote, Path]
) -> None:
    """`federation_sender_instances`: main queues to-device messages for remote users in the
    outbox (in the send's own transaction, announced to the worker), and the sending process
    moves them into its queue in order; a client's retry is not queued twice."""
    from homeserver.federation.sender.outbox import OutboxReader
    from homeserver.storage.stores.federation_queue import FederationQueueStore

    fake, ca = remote
    clock = FakeClock()
    client, main = await start_server(
        aiohttp_client, _config(tmp_path, ca, federation_sender_instances=["fs1"]), clock
    )
    assert main.federation_sender is None and main.federation_outbox is not None
    announced: list[int] = []
    main.federation_outbox.wake_hooks.append(lambda: announced.append(1))
    alice = await register(client)
    bob = f"@bob:{fake.name}"
    for txn in ("t0", "t1", "t2", "t2"):  # the last one a client's retry
        resp = await client.put(
            f"/_matrix/client/v3/sendToDevice/m.test/{txn}",
            json={"messages": {bob: {"DEV": {"n": txn}}}},
            headers=auth(alice["access_token"]),
        )
        assert resp.status == 200
    assert len(announced) == 3

    # the sending process (a worker in production; here a second process on the same database)
    _, sending = await start_server(aiohttp_client, _config(tmp_path, ca), clock)
    assert sending.federation_sender is not None
    reader = OutboxReader(sending.federation_sender, FederationQueueStore(sending.db))
    assert await reader.move_batch() == 3
    assert await reader.move_batch() == 0  # moved, not copied
    await settle(sending)
    edus = fake.edus_of("m.direct_to_device")
    assert [e["messages"][bob]["DEV"]["n"] for e in edus] == ["t0", "t1", "t2"]
    assert all(e["sender"] == alice["user_id"] for e in edus)
