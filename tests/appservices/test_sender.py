"""Pushing transactions to appservices (homeserver/appservice/sender/), against a fake appservice:
interest rules, order, batching, retries with the same txn id, backoff, restarts, ephemeral
events, to-device messages, a null url."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from aiohttp.test_utils import TestClient

from homeserver.app import create_app_from_config
from homeserver.appservice.sender.queue import AppServiceQueue
from homeserver.config import HomeserverConfig

from ..api.helpers import auth, register
from ..conftest import services_of
from .as_fake import (
    SERVER,
    FakeAppService,
    FakeServer,
    drained,
    registration,
    start_homeserver,
    write_registrations,
)

V3 = "/_matrix/client/v3"
_txn = itertools.count()


@pytest.fixture
async def fakes(aiohttp_server: Any) -> FakeServer:
    server = FakeServer()
    server.server = await aiohttp_server(server.app())
    return server


async def _room(hs: TestClient, token: str, **body: Any) -> str:
    resp = await hs.post(f"{V3}/createRoom", json=body, headers=auth(token))
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["room_id"])


async def _send(hs: TestClient, token: str, room_id: str, text: str, user_id: str | None = None) -> str:
    params = {"user_id": user_id} if user_id else {}
    resp = await hs.put(
        f"{V3}/rooms/{room_id}/send/m.room.message/t{next(_txn)}",
        json={"msgtype": "m.text", "body": text},
        headers=auth(token),
        params=params,
    )
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["event_id"])


async def _as_register(hs: TestClient, fake: FakeAppService, localpart: str) -> dict[str, Any]:
    resp = await hs.post(
        f"{V3}/register",
        json={"type": "m.login.application_service", "username": localpart},
        headers=auth(fake.as_token),
    )
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def _as_join(hs: TestClient, fake: FakeAppService, room_id: str, user_id: str) -> None:
    resp = await hs.post(
        f"{V3}/rooms/{room_id}/join", json={}, headers=auth(fake.as_token), params={"user_id": user_id}
    )
    assert resp.status == 200, await resp.text()


def _metric(name: str, service: str) -> float | None:
    value = prometheus_client.REGISTRY.get_sample_value(name, {"service": service, "server_name": SERVER})
    return value


async def test_interest_rules(aiohttp_client: Any, tmp_path: Path, fakes: FakeServer) -> None:
    users, aliases, rooms = fakes.add("users"), fakes.add("aliases"), fakes.add("rooms")
    paths = write_registrations(
        tmp_path,
        [
            registration(users, fakes.url("users"), users=(r"@ns_.*:test\.local",)),
            registration(aliases, fakes.url("aliases"), aliases=(r"#al_.*:test\.local",)),
            registration(rooms, fakes.url("rooms"), rooms=(r"!.*:test\.local",)),
        ],
    )
    hs = await start_homeserver(aiohttp_client, tmp_path, paths)
    services = services_of(hs)
    alice = await register(hs)
    token = alice["access_token"]
    plain = await _room(hs, token)
    await _send(hs, token, plain, "m1 nobody's")

    aliased = await _room(hs, token)
    resp = await hs.put(
        f"{V3}/directory/room/%23al_x:{SERVER}", json={"room_id": aliased}, headers=auth(aliases.as_token)
    )
    assert resp.status == 200, await resp.text()
    await _send(hs, token, aliased, "m2 aliased room")

    bridged = await _room(hs, token)
    bob = (await _as_register(hs, users, "ns_bob"))["user_id"]
    resp = await hs.post(f"{V3}/rooms/{bridged}/invite", json={"user_id": bob}, headers=auth(token))
    assert resp.status == 200
    await _as_join(hs, users, bridged, bob)
    await _send(hs, token, bridged, "m3 member in namespace")
    await _send(hs, users.as_token, bridged, "m4 from the ghost", user_id=bob)
    resp = await hs.post(
        f"{V3}/rooms/{bridged}/leave", json={}, headers=auth(users.as_token), params={"user_id": bob}
    )
    assert resp.status == 200
    await _send(hs, token, bridged, "m5 after the ghost left")
    await drained(services)

    assert users.bodies() == ["m3 member in namespace", "m4 from the ghost"]
    memberships = [
        (e["state_key"], e["content"]["membership"]) for e in users.events() if e["type"] == "m.room.member"
    ]
    assert memberships == [(bob, "invite"), (bob, "join"), (bob, "leave")]
    invite = next(e for e in users.events() if e["type"] == "m.room.member")
    # client format, with the stripped state an invite carries
    assert {"event_id", "room_id", "sender", "origin_server_ts", "content", "unsigned"} <= set(invite)
    assert "age" in invite["unsigned"] and "invite_room_state" in invite["unsigned"]
    assert "signatures" not in invite and "hashes" not in invite
    # Synapse's legacy v1 format on top: user_id = sender, unsigned keys copied up
    assert invite["user_id"] == invite["sender"] == alice["user_id"]
    assert invite["invite_room_state"] == invite["unsigned"]["invite_room_state"]
    assert isinstance(invite["age"], int)
    join = [e for e in users.events() if e["type"] == "m.room.member"][1]
    assert join["prev_content"]["membership"] == "invite" and join["user_id"] == bob
    assert join["replaces_state"] == join["unsigned"]["replaces_state"]
    message = next(e for e in users.events() if e["type"] == "m.room.message")
    assert "prev_content" not in message and "replaces_state" not in message

    assert aliases.bodies() == ["m2 aliased room"]
    assert {e["room_id"] for e in aliases.events()} == {aliased}
    assert rooms.bodies() == [
        "m1 nobody's",
        "m2 aliased room",
        "m3 member in namespace",
        "m4 from the ghost",
        "m5 after the ghost left",
    ]
    for fake in (users, aliases, rooms):
        assert all(r.authorization == f"Bearer {fake.hs_token}" for r in fake.attempts)
        assert all("access_token" not in r.query for r in fake.attempts)  # as Synapse's default
        ids = [int(r.txn_id) for r in fake.accepted]
        assert ids == list(range(1, len(ids) + 1))
        assert all("ephemeral" not in r.body for r in fake.accepted)  # not asked for


async def test_order_and_batches_of_100(aiohttp_client: Any, tmp_path: Path, fakes: FakeServer) -> None:
    fake = fakes.add("bridge")
    paths = write_registrations(tmp_path, [registration(fake, fakes.url("bridge"), rooms=(r"!.*",))])
    hs = await start_homeserver(aiohttp_client, tmp_path, paths)
    alice = await register(hs)
    room = await _room(hs, alice["access_token"])
    fake.gate = asyncio.Event()  # the appservice is busy: transactions wait
    await _send(hs, alice["access_token"], room, "first")
    await fake.wait_until(lambda: True)  # nothing recorded yet; the first transaction is held
    for i in range(150):
        await _send(hs, alice["access_token"], room, f"n{i}")
    fake.gate.set()
    await drained(services_of(hs))
    assert fake.bodies() == ["first"] + [f"n{i}" for i in range(150)]
    sizes = [len(r.body["events"]) for r in fake.accepted]
    assert max(sizes) == 100 and len(sizes) >= 3
    ids = [int(r.txn_id) for r in fake.accepted]
    assert ids == sorted(ids) == list(range(ids[0], ids[0] + len(ids)))


async def test_retry_after_500_with_the_same_txn_id_and_backoff(
    aiohttp_client: Any, tmp_path: Path, fakes: FakeServer
) -> None:
    fake = fakes.add("flaky")
    paths = write_registrations(tmp_path, [registration(fake, fakes.url("flaky"), rooms=(r"!.*",))])
    hs = await start_homeserver(aiohttp_client, tmp_path, paths)
    services = services_of(hs)
    queue = services.appservice_sender.queues["flaky"]
    alice = await register(hs)
    room = await _room(hs, alice["access_token"])
    await drained(services)
    failed_before = _metric("synapse_appservice_api_failed_transactions_total", "flaky") or 0

    fake.fail_status = 500
    event_id = await _send(hs, alice["access_token"], room, "hello")
    await fake.wait_until(lambda: len([a for a in fake.attempts if a.status == 500]) >= 3)
    failing = [a for a in fake.attempts if a.status == 500]
    assert len({a.txn_id for a in failing}) == 1  # the same transaction each time
    assert queue.backoff.failures >= 3
    assert queue.backoff.interval == min(0.05 * 2 ** (queue.backoff.failures - 1), 0.4)
    assert _metric("homeserver_appservice_up", "flaky") == 0
    assert _metric("homeserver_appservice_pending_transactions", "flaky") == 1
    assert (_metric("synapse_appservice_api_failed_transactions_total", "flaky") or 0) >= failed_before + 3

    fake.fail_status = None
    await drained(services)
    assert fake.accepted[-1].txn_id == failing[0].txn_id
    assert [e["event_id"] for e in fake.accepted[-1].body["events"]] == [event_id]
    assert [b for b in fake.bodies() if b == "hello"] == ["hello"]
    assert _metric("homeserver_appservice_up", "flaky") == 1
    assert (_metric("homeserver_appservice_last_success_timestamp_seconds", "flaky") or 0) > 0
    assert queue.backoff.failures == 0


async def test_ping_retries_a_down_appservice_at_once(
    aiohttp_client: Any, tmp_path: Path, fakes: FakeServer
) -> None:
    fake = fakes.add("pinged")
    paths = write_registrations(tmp_path, [registration(fake, fakes.url("pinged"), rooms=(r"!.*",))])
    hs = await start_homeserver(aiohttp_client, tmp_path, paths)
    services = services_of(hs)
    services.appservice_sender.policy.min_s = services.appservice_sender.policy.max_s = 3600
    alice = await register(hs)
    room = await _room(hs, alice["access_token"])
    await drained(services)
    fake.fail_status = 500
    await _send(hs, alice["access_token"], room, "while down")
    await fake.wait_until(lambda: any(a.status == 500 for a in fake.attempts))
    fake.fail_status = None
    resp = await hs.post("/_matrix/client/v1/appservice/pinged/ping", json={}, headers=auth(fake.as_token))
    assert resp.status == 200, await resp.text()
    await fake.wait_until(lambda: "while down" in fake.bodies())  # not an hour later


async def test_restart_with_a_queued_transaction_delivers_exactly_once(
    aiohttp_client: Any, tmp_path: Path, fakes: FakeServer, engine_config: Callable[..., HomeserverConfig]
) -> None:
    fake = fakes.add("restart")
    paths = write_registrations(tmp_path, [registration(fake, fakes.url("restart"), rooms=(r"!.*",))])
    config = engine_config(app_service_config_files=paths)
    hs = await start_homeserver(aiohttp_client, tmp_path, paths, config)
    alice = await register(hs, "alice")
    room = await _room(hs, alice["access_token"])
    await drained(services_of(hs))
    fake.fail_status = 503
    await _send(hs, alice["access_token"], room, "one")
    await fake.wait_until(lambda: any(a.status == 503 for a in fake.attempts))
    await _send(hs, alice["access_token"], room, "two")  # waits behind the failing transaction
    failed_txn = next(a for a in fake.attempts if a.status == 503)
    await hs.close()

    fake.fail_status = None
    hs2: TestClient = await aiohttp_client(create_app_from_config(config))
    services = services_of(hs2)
    await drained(services)
    login = await hs2.post(
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "pass-word-1",
        },
    )
    token = (await login.json())["access_token"]
    await _send(hs2, token, room, "three")
    await drained(services)
    assert fake.bodies().count("one") == 1 and fake.bodies().count("two") == 1
    assert fake.bodies()[-3:] == ["one", "two", "three"]
    # the transaction from before the restart went out again under its id, with its content
    resent = next(r for r in fake.accepted if r.txn_id == failed_txn.txn_id)
    assert [e["event_id"] for e in resent.body["events"]] == [
        e["event_id"] for e in failed_txn.body["events"]
    ]
    ids = [int(r.txn_id) for r in fake.accepted]
    assert ids == list(range(1, len(ids) + 1))
    assert await services.db.fetchval("SELECT COUNT(*) FROM appservice_txns") == 0


async def test_dead_appservice_keeps_memory_bounded_and_catches_up_in_order(
    aiohttp_client: Any, tmp_path: Path, fakes: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AppServiceQueue, "WINDOW", 5)
    fake = fakes.add("dead")
    paths = write_registrations(tmp_path, [registration(fake, fakes.url("dead"), rooms=(r"!.*",))])
    hs = await start_homeserver(aiohttp_client, tmp_path, paths)
    services = services_of(hs)
    queue = services.appservice_sender.queues["dead"]
    alice = await register(hs)
    room = await _room(hs, alice["access_token"])
    await drained(services)
    fake.fail_status = 502
    for i in range(30):
        await _send(hs, alice["access_token"], room, f"d{i}")
        assert len(queue.window) <= 5
    assert queue.pending_transactions == 1
    fake.fail_status = None
    queue.force_retry()
    await drained(services)
    assert fake.bodies()[-30:] == [f"d{i}" for i in range(30)]
    assert len(fake.bodies()) == len(set(fake.bodies()))


async def test_ephemeral_typing_and_receipts(aiohttp_client: Any, tmp_path: Path, fakes: FakeServer) -> None:
    stable, unstable, plain = fakes.add("stable"), fakes.add("unstable"), fakes.add("plain")
    paths = write_registrations(
        tmp_path,
        [
            registration(stable, fakes.url("stable"), users=(r"@st_.*",), receive_ephemeral=True),
            registration(
                unstable,
                fakes.url("unstable"),
                users=(r"@un_.*",),
                **{"de.sorunome.msc2409.push_ephemeral": True},
            ),
            registration(plain, fakes.url("plain"), users=(r"@pl_.*",)),
        ],
    )
    hs = await start_homeserver(aiohttp_client, tmp_path, paths)
    alice = await register(hs)
    token = alice["access_token"]
    room = await _room(hs, token, preset="public_chat")
    for fake, localpart in ((stable, "st_a"), (unstable, "un_a"), (plain, "pl_a")):
        user_id = (await _as_register(hs, fake, localpart))["user_id"]
        await _as_join(hs, fake, room, user_id)
    event_id = await _send(hs, token, room, "read me")
    resp = await hs.put(
        f"{V3}/rooms/{room}/typing/{alice['user_id']}",
        json={"typing": True, "timeout": 30000},
        headers=auth(token),
    )
    assert resp.status == 200
    resp = await hs.post(f"{V3}/rooms/{room}/receipt/m.read/{event_id}", json={}, headers=auth(token))
    assert resp.status == 200
    resp = await hs.post(f"{V3}/rooms/{room}/receipt/m.read.private/{event_id}", json={}, headers=auth(token))
    assert resp.status == 200

    def got_both(fake: FakeAppService, key: str) -> bool:
        types = {e["type"] for e in fake.ephemeral(key)}
        return {"m.typing", "m.receipt"} <= types

    await stable.wait_until(lambda: got_both(stable, "ephemeral"))
    await unstable.wait_until(lambda: got_both(unstable, "de.sorunome.msc2409.ephemeral"))
    typing = next(e for e in stable.ephemeral() if e["type"] == "m.typing")
    assert typing == {"type": "m.typing", "room_id": room, "content": {"user_ids": [alice["user_id"]]}}
    receipts = [e for e in stable.ephemeral() if e["type"] == "m.receipt"]
    assert receipts[0]["room_id"] == room
    assert alice["user_id"] in receipts[0]["content"][event_id]["m.read"]
    assert all("m.read.private" not in e["content"][event_id] for e in receipts)
    assert all("de.sorunome.msc2409.ephemeral" not in r.body for r in stable.accepted)
    assert all("ephemeral" not in r.body for r in unstable.accepted)
    await drained(services_of(hs))
    assert plain.bodies() == ["read me"]
    assert all(
        "ephemeral" not in r.body and "de.sorunome.msc2409.to_device" not in r.body for r in plain.accepted
    )


async def test_to_device_for_appservice_users(aiohttp_client: Any, tmp_path: Path, fakes: FakeServer) -> None:
    fake = fakes.add("crypto")
    paths = write_registrations(
        tmp_path, [registration(fake, fakes.url("crypto"), users=(r"@cr_.*",), receive_ephemeral=True)]
    )
    hs = await start_homeserver(aiohttp_client, tmp_path, paths)
    alice = await register(hs)
    other = await register(hs)
    ghost = await _as_register(hs, fake, "cr_bob")
    resp = await hs.put(
        f"{V3}/sendToDevice/m.test/t1",
        json={
            "messages": {
                ghost["user_id"]: {ghost["device_id"]: {"secret": 1}},
                other["user_id"]: {other["device_id"]: {"secret": 2}},
            }
        },
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200

    def messages() -> list[dict[str, Any]]:
        return [m for r in fake.accepted for m in r.body.get("de.sorunome.msc2409.to_device", [])]

    await fake.wait_until(lambda: bool(messages()))
    assert messages() == [
        {
            "type": "m.test",
            "sender": alice["user_id"],
            "content": {"secret": 1},
            "to_user_id": ghost["user_id"],
            "to_device_id": ghost["device_id"],
        }
    ]


async def test_null_url_gets_no_queue(aiohttp_client: Any, tmp_path: Path, fakes: FakeServer) -> None:
    fake = fakes.add("nourl")
    listening = fakes.add("listening")
    paths = write_registrations(
        tmp_path,
        [
            registration(fake, None, users=(r"@nu_.*",), rooms=(r"!.*",)),
            registration(listening, fakes.url("listening"), rooms=(r"!.*",)),
        ],
    )
    hs = await start_homeserver(aiohttp_client, tmp_path, paths)
    services = services_of(hs)
    alice = await register(hs)
    room = await _room(hs, alice["access_token"])
    await _send(hs, alice["access_token"], room, "hi")
    await drained(services)
    assert set(services.appservice_sender.queues) == {"listening"}
    assert listening.bodies() == ["hi"]
    assert fake.attempts == []
    rows = await services.db.fetch("SELECT as_id FROM appservice_positions")
    assert [r[0] for r in rows] == ["listening"]


async def test_presence_and_msc3202_device_lists(
    aiohttp_client: Any, tmp_path: Path, fakes: FakeServer
) -> None:
    fake = fakes.add("keys")
    outsider = fakes.add("outsider")
    paths = write_registrations(
        tmp_path,
        [
            registration(
                fake,
                fakes.url("keys"),
                users=(r"@ky_.*",),
                receive_ephemeral=True,
                **{"org.matrix.msc3202": True},
            ),
            registration(outsider, fakes.url("outsider"), users=(r"@out_.*",), receive_ephemeral=True),
        ],
    )
    hs = await start_homeserver(aiohttp_client, tmp_path, paths)
    services = services_of(hs)
    alice = await register(hs)
    loner = await register(hs)
    room = await _room(hs, alice["access_token"], preset="public_chat")
    registered = await _as_register(hs, fake, "ky_a")
    ghost, ghost_device = registered["user_id"], registered["device_id"]
    await _as_join(hs, fake, room, ghost)
    await drained(services)
    async with services.db.transaction() as conn:  # two one-time keys and a fallback key
        await conn.executemany(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, ts_added_ms)"
            " VALUES ($1, $2, $3, $4, $5, 0)",
            [(ghost, ghost_device, "signed_curve25519", k, "{}") for k in ("K1", "K2")],
        )
        await conn.execute(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
            " VALUES ($1, $2, 'signed_curve25519', 'F1', '{}', FALSE)",
            ghost,
            ghost_device,
        )

    for user in (alice, loner):  # alice shares a room with the namespace, loner does not
        resp = await hs.put(
            f"{V3}/presence/{user['user_id']}/status",
            json={"presence": "online", "status_msg": "here"},
            headers=auth(user["access_token"]),
        )
        assert resp.status == 200
        await services.device_lists.record([(user["user_id"], None)])

    def presence() -> list[dict[str, Any]]:
        return [e for e in fake.ephemeral() if e["type"] == "m.presence"]

    def changed() -> list[str]:
        return [
            u
            for r in fake.accepted
            for u in r.body.get("org.matrix.msc3202.device_lists", {}).get("changed", [])
        ]

    await fake.wait_until(lambda: any(e["sender"] == alice["user_id"] for e in presence()))
    await fake.wait_until(lambda: alice["user_id"] in changed())
    event = next(e for e in presence() if e["sender"] == alice["user_id"])
    assert event["content"]["presence"] == "online" and event["content"]["status_msg"] == "here"
    # the marker: a later event for both, after which nothing about loner may have arrived
    await _send(hs, alice["access_token"], room, "marker")
    await fake.wait_until(lambda: "marker" in fake.bodies())
    assert loner["user_id"] not in {e["sender"] for e in presence()}
    assert loner["user_id"] not in changed()
    marker = next(
        r for r in fake.accepted if any(e["content"].get("body") == "marker" for e in r.body["events"])
    )
    expected = {ghost: {ghost_device: {"signed_curve25519": 2}}}
    assert marker.body["org.matrix.msc3202.device_one_time_key_counts"] == expected
    assert marker.body["org.matrix.msc3202.device_one_time_keys_count"] == expected
    assert marker.body["org.matrix.msc3202.device_unused_fallback_key_types"] == {
        ghost: {ghost_device: ["signed_curve25519"]}
    }
    assert outsider.attempts == []  # no user of its namespace anywhere, no device-list opt-in
