"""The inbound federation pipeline through PUT /_matrix/federation/v1/send/{txnId}.

A fake remote server (tests/api/federation_remote.py) on loopback TLS signs events with its own
key; our app fetches that key with its real keyring and pulls missing events from it with its real
federation client. Covered: joins and messages from a remote user, forged signatures, a wrong
content hash (stored redacted), auth failures (rejected), soft failure, unknown rooms and rooms we
left, oversized PDUs and transactions, server ACLs on PDUs and EDUs, transaction replay, gap
filling with /get_missing_events and with /state_ids when the gap is wider, missing auth events
(/event_auth), and a fork resolved by state resolution v2 the same way whatever the arrival order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.app import create_app_from_config
from homeserver.config.sections import HomeserverConfig
from homeserver.container import Services
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion

from ..clients.federation_harness import make_ca_and_leaf
from ..conftest import services_of
from .federation_remote import FakeRemote, remote_config
from .helpers import auth, register


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_leaf(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def remote(certs: tuple[Path, Path, Path]) -> AsyncIterator[FakeRemote]:
    fake = FakeRemote()
    await fake.start(certs[1], certs[2])
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def hs(
    aiohttp_client: Any,
    engine_config: Callable[..., HomeserverConfig],
    certs: tuple[Path, Path, Path],
    remote: FakeRemote,
) -> Any:
    """Our server, once per engine, able to reach the fake remote."""
    return await aiohttp_client(create_app_from_config(engine_config(**remote_config(certs[0]))))


@dataclass
class Room:
    room_id: str
    version: RoomVersion
    token: str
    user_id: str
    bob_join: Event


async def joined_room(hs: Any, remote: FakeRemote, *, admins: tuple[str, ...] = (), **create: Any) -> Room:
    """A public room created by a local user, joined by @bob on the remote server over /send.
    `admins`: remote users given power 100 (besides the creator)."""
    alice = await register(hs)
    body = {"preset": "public_chat", "room_version": "10", **create}
    if admins:
        users = {alice["user_id"]: 100, **{a: 100 for a in admins}}
        body["power_level_content_override"] = {
            **body.get("power_level_content_override", {}),
            "users": users,
        }
    resp = await hs.post("/_matrix/client/v3/createRoom", json=body, headers=auth(alice["access_token"]))
    assert resp.status == 200, await resp.json()
    room_id = (await resp.json())["room_id"]
    services = services_of(hs)
    tips = await remote.learn_room(services, room_id)
    version = (await services.state.get(room_id)).version  # type: ignore[union-attr]
    join = remote.join(version, room_id, "bob", tips)
    status, result = await remote.send(hs, [join.pdu])
    assert (status, result) == (200, {"pdus": {join.event_id: {}}})
    return Room(room_id, version, alice["access_token"], alice["user_id"], join)


def say(remote: FakeRemote, room: Room, text: str, prev: str, *, sender: str = "bob", **kw: Any) -> Event:
    """A message from a remote user on top of `prev`."""
    content = {"msgtype": "m.text", "body": text}
    return remote.make(
        room.version, room.room_id, remote.user(sender), "m.room.message", content, prev=[prev], **kw
    )


async def stored_row(services: Services, event_id: str) -> Any:
    return await services.db.fetchrow(
        "SELECT outlier, rejected_reason, soft_failed, json FROM events WHERE event_id = $1", event_id
    )


async def current_ids(services: Services, room_id: str) -> dict[tuple[str, str], str]:
    snapshot = await services.state.get(room_id)
    assert snapshot is not None
    return {k: e.event_id for k, e in snapshot.state.items()}


async def timeline_ids(hs: Any, room: Room) -> list[str]:
    resp = await hs.get(
        f"/_matrix/client/v3/rooms/{room.room_id}/messages?dir=b&limit=50", headers=auth(room.token)
    )
    assert resp.status == 200
    return [e["event_id"] for e in (await resp.json())["chunk"]]


async def test_remote_join_and_message_reach_local_clients(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    snapshot = await services.state.get(room.room_id)
    assert snapshot is not None and snapshot.membership(remote.user("bob")) == "join"
    assert snapshot.extremities == (room.bob_join.event_id,)
    message = say(remote, room, "hello from afar", room.bob_join.event_id)
    status, body = await remote.send(hs, [message.pdu])
    assert (status, body) == (200, {"pdus": {message.event_id: {}}})
    assert message.event_id in await timeline_ids(hs, room)
    # a second delivery of the same event (another transaction) is accepted and not stored twice
    status, body = await remote.send(hs, [message.pdu])
    assert (status, body) == (200, {"pdus": {message.event_id: {}}})
    count = await services.db.fetchval("SELECT COUNT(*) FROM events WHERE event_id = $1", message.event_id)
    assert count == 1


async def test_forged_and_missing_signatures_are_dropped(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    forger = ServerSigningKey.from_signing_key(generate_signing_key("fake1"))  # same key id, other key
    forged = say(remote, room, "x", room.bob_join.event_id, key=forger)
    unsigned = dict(say(remote, room, "y", room.bob_join.event_id).pdu)
    unsigned["signatures"] = {}
    status, body = await remote.send(hs, [forged.pdu, unsigned])
    assert status == 200
    assert set(body["pdus"]) == {forged.event_id, _event_id(unsigned, room.version)}
    for result in body["pdus"].values():
        assert "signature" in result["error"].lower() or "not signed" in result["error"].lower()
    assert await stored_row(services, forged.event_id) is None
    assert await stored_row(services, _event_id(unsigned, room.version)) is None


def _event_id(pdu: dict[str, Any], version: RoomVersion) -> str:
    return Event(pdu, version).event_id


async def test_wrong_content_hash_is_stored_redacted(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    message = say(remote, room, "original", room.bob_join.event_id)
    tampered = {**message.pdu, "content": {"msgtype": "m.text", "body": "tampered"}}
    status, body = await remote.send(hs, [tampered])
    assert (status, body) == (200, {"pdus": {message.event_id: {}}})
    stored = await services.events.get_event(message.event_id)
    assert stored is not None and dict(stored.event.content) == {}


async def test_auth_failure_is_rejected_and_kept_out_of_state(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    before = await current_ids(services, room.room_id)
    # bob has power 0: he may not change the power levels
    bob = remote.user("bob")
    content = {"users": {bob: 100}}
    prev = [room.bob_join.event_id]
    grab = remote.make(
        room.version, room.room_id, bob, "m.room.power_levels", content, prev=prev, state_key=""
    )
    status, body = await remote.send(hs, [grab.pdu])
    assert status == 200 and "error" in body["pdus"][grab.event_id]
    row = await stored_row(services, grab.event_id)
    assert row is not None and row[1] is not None and not row[0]
    assert await current_ids(services, room.room_id) == before
    snapshot = await services.state.get(room.room_id)
    assert snapshot is not None and snapshot.extremities == (room.bob_join.event_id,)
    assert grab.event_id not in await timeline_ids(hs, room)


async def test_soft_fail_against_current_state(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    resp = await hs.post(
        f"/_matrix/client/v3/rooms/{room.room_id}/ban",
        json={"user_id": remote.user("bob"), "reason": "spam"},
        headers=auth(room.token),
    )
    assert resp.status == 200
    snapshot = await services.state.get(room.room_id)
    assert snapshot is not None
    tips = snapshot.extremities
    # bob's server has not seen the ban: his message builds on his join, where he was a member
    late = say(remote, room, "late", room.bob_join.event_id)
    status, body = await remote.send(hs, [late.pdu])
    assert (status, body) == (200, {"pdus": {late.event_id: {}}})
    row = await stored_row(services, late.event_id)
    assert row is not None and bool(row[2]) and row[1] is None
    snapshot = await services.state.get(room.room_id)
    assert snapshot is not None and snapshot.extremities == tips
    assert late.event_id not in await timeline_ids(hs, room)


async def test_soft_fail_uses_current_state_resolved_with_the_events_state(
    hs: Any, remote: FakeRemote
) -> None:
    """carol joined on the remote side; we learn her join only from /state_ids for her message.
    Our current state lacks her, but resolved with the state before her message it has her
    joined: the message is accepted, not soft-failed (Synapse's check)."""
    room = await joined_room(hs, remote)
    services = services_of(hs)
    remote.failing.add("get_missing_events")
    carol_join = remote.join(room.version, room.room_id, "carol", [room.bob_join.event_id])
    message = remote.make(
        room.version,
        room.room_id,
        remote.user("carol"),
        "m.room.message",
        {"msgtype": "m.text", "body": "carol"},
        prev=[carol_join.event_id],
    )
    assert ("m.room.member", remote.user("carol")) not in await current_ids(services, room.room_id)
    status, body = await remote.send(hs, [message.pdu])
    assert (status, body) == (200, {"pdus": {message.event_id: {}}})
    row = await stored_row(services, message.event_id)
    assert row is not None and not row[2] and row[1] is None
    assert message.event_id in await timeline_ids(hs, room)
    ids = await current_ids(services, room.room_id)
    assert ids[("m.room.member", remote.user("carol"))] == carol_join.event_id


async def test_unknown_room_and_room_we_left(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    stray = dict(room.bob_join.pdu)
    stray["room_id"] = "!nowhere:elsewhere.example"
    message = say(remote, room, "hi", room.bob_join.event_id)
    resp = await hs.post(f"/_matrix/client/v3/rooms/{room.room_id}/leave", json={}, headers=auth(room.token))
    assert resp.status == 200
    status, body = await remote.send(hs, [stray, message.pdu])
    assert status == 200
    # the unknown room's PDU is left out; the room we left answers with an error
    assert list(body["pdus"]) == [message.event_id]
    assert "not in the room" in body["pdus"][message.event_id]["error"]
    assert await stored_row(services, message.event_id) is None


async def test_oversized_pdu_and_transaction_limits(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    big = say(remote, room, "x" * 70_000, room.bob_join.event_id)
    status, body = await remote.send(hs, [big.pdu])
    assert status == 200 and "larger than" in body["pdus"][big.event_id]["error"]
    assert await stored_row(services_of(hs), big.event_id) is None

    status, body = await remote.send(hs, [room.bob_join.pdu] * 51)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await remote.send(hs, [], [{"edu_type": "m.x", "content": {}}] * 101)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    for bad in ({"pdus": {"not": "a list"}}, {"pdus": [], "edus": "x"}, {}, [1]):
        status, body = await remote.send_body(hs, bad)
        assert (status, body["errcode"]) == (400, "M_BAD_JSON"), bad


async def test_server_acl_denies_pdus_and_edus(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    dispatched: list[tuple[str, str, Any]] = []

    async def record(origin: str, edu_type: str, content: Any) -> None:
        dispatched.append((origin, edu_type, content))

    services.federation_edus.dispatch = record  # type: ignore[method-assign]
    typing = {
        "edu_type": "m.typing",
        "content": {"room_id": room.room_id, "user_id": remote.user("bob"), "typing": True},
    }
    receipt = {"edu_type": "m.receipt", "content": {room.room_id: {"m.read": {}}, "!other:x": {"m.read": {}}}}
    status, _ = await remote.send(hs, [], [typing, receipt])
    assert status == 200 and [d[1] for d in dispatched] == ["m.typing", "m.receipt"]

    resp = await hs.put(
        f"/_matrix/client/v3/rooms/{room.room_id}/state/m.room.server_acl",
        json={"allow": ["*"], "deny": ["localhost"], "allow_ip_literals": True},
        headers=auth(room.token),
    )
    assert resp.status == 200
    dispatched.clear()
    message = say(remote, room, "hi", room.bob_join.event_id)
    status, body = await remote.send(hs, [message.pdu], [typing, receipt])
    assert status == 200 and "ACL" in body["pdus"][message.event_id]["error"]
    assert await stored_row(services, message.event_id) is None
    # the typing EDU is dropped; the receipt keeps only the room the ACL does not cover
    assert dispatched == [(remote.name, "m.receipt", {"!other:x": {"m.read": {}}})]


async def test_transaction_replay_is_idempotent(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    calls: list[str] = []

    async def record(origin: str, edu_type: str, content: Any) -> None:
        calls.append(edu_type)

    services.federation_edus.dispatch = record  # type: ignore[method-assign]
    first = say(remote, room, "1", room.bob_join.event_id)
    edu = {"edu_type": "m.custom", "content": {}}
    reply1 = await remote.send(hs, [first.pdu], [edu], txn_id="same-txn")
    assert reply1 == (200, {"pdus": {first.event_id: {}}})
    # the same transaction id again (a retry): same answer, nothing processed again
    other = say(remote, room, "2", first.event_id)
    reply2 = await remote.send(hs, [other.pdu], [edu], txn_id="same-txn")
    assert reply2 == reply1
    assert calls == ["m.custom"]
    assert await stored_row(services, other.event_id) is None
    # the answer survives a restart of the handler (it is stored)
    assert await services.federation_inbound_store.get_txn_response(remote.name, "same-txn") == reply1[1]


async def test_gap_filled_with_get_missing_events(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    bob = remote.user("bob")
    prev = room.bob_join.event_id
    gap: list[Event] = []
    for i in range(4):
        event = remote.make(
            room.version,
            room.room_id,
            bob,
            "m.room.message",
            {"msgtype": "m.text", "body": str(i)},
            prev=[prev],
        )
        gap.append(event)
        prev = event.event_id
    rename = remote.make(
        room.version,
        room.room_id,
        bob,
        "m.room.member",
        {"membership": "join", "displayname": "Bob"},
        prev=[prev],
        state_key=bob,
    )
    last = remote.make(
        room.version,
        room.room_id,
        bob,
        "m.room.message",
        {"msgtype": "m.text", "body": "last"},
        prev=[rename.event_id],
    )
    status, body = await remote.send(hs, [last.pdu])
    assert (status, body) == (200, {"pdus": {last.event_id: {}}})
    assert remote.requests.count("get_missing_events") == 1 and "state_ids" not in remote.requests
    for event in [*gap, rename, last]:
        row = await stored_row(services, event.event_id)
        assert row is not None and not row[0] and row[1] is None and not row[2], event
    ids = await current_ids(services, room.room_id)
    assert ids[("m.room.member", bob)] == rename.event_id
    snapshot = await services.state.get(room.room_id)
    assert snapshot is not None and snapshot.extremities == (last.event_id,)
    timeline = await timeline_ids(hs, room)
    assert timeline[:6] == [last.event_id, rename.event_id, *[e.event_id for e in reversed(gap)]]


async def test_wide_gap_falls_back_to_state_ids(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    bob = remote.user("bob")
    # carol joins on the remote side; we never see her join directly
    carol_join = remote.join(room.version, room.room_id, "carol", [room.bob_join.event_id])
    prev = carol_join.event_id
    for i in range(14):  # more than get_missing_events returns (10)
        prev = remote.make(
            room.version,
            room.room_id,
            bob,
            "m.room.message",
            {"msgtype": "m.text", "body": str(i)},
            prev=[prev],
        ).event_id
    final = remote.make(
        room.version,
        room.room_id,
        remote.user("carol"),
        "m.room.message",
        {"msgtype": "m.text", "body": "carol"},
        prev=[prev],
    )
    status, body = await remote.send(hs, [final.pdu])
    assert (status, body) == (200, {"pdus": {final.event_id: {}}})
    assert "get_missing_events" in remote.requests and "state_ids" in remote.requests
    # the state from /state_ids includes carol's join, fetched and stored as an outlier
    row = await stored_row(services, carol_join.event_id)
    assert row is not None and row[0]
    ids = await current_ids(services, room.room_id)
    assert ids[("m.room.member", remote.user("carol"))] == carol_join.event_id
    assert (await services.state.get(room.room_id)).membership(remote.user("carol")) == "join"  # type: ignore[union-attr]


async def test_missing_auth_events_fetched_with_event_auth(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    remote.failing.add("get_missing_events")
    carol_join = remote.join(room.version, room.room_id, "carol", [room.bob_join.event_id])
    said = remote.make(
        room.version,
        room.room_id,
        remote.user("carol"),
        "m.room.message",
        {"msgtype": "m.text", "body": "hi"},
        prev=[carol_join.event_id],
    )
    status, body = await remote.send(hs, [said.pdu])
    assert (status, body) == (200, {"pdus": {said.event_id: {}}})
    assert "event_auth" in remote.requests and "state_ids" in remote.requests
    row = await stored_row(services, said.event_id)
    assert row is not None and not row[0] and row[1] is None
    # carol's join came as an auth event (an outlier); when it arrives live it joins the DAG, as
    # history behind her message (not a forward extremity, no change of the current state)
    assert (await stored_row(services, carol_join.event_id))[0]
    tips = (await services.state.get(room.room_id)).extremities  # type: ignore[union-attr]
    assert (await remote.send(hs, [carol_join.pdu]))[1] == {"pdus": {carol_join.event_id: {}}}
    row = await stored_row(services, carol_join.event_id)
    assert row is not None and not row[0] and row[1] is None
    before = await services.state.state_ids_at_event(carol_join.event_id, before=True)
    assert before == remote.state_before[carol_join.event_id]
    assert (await services.state.get(room.room_id)).extremities == tips  # type: ignore[union-attr]


async def test_gap_that_cannot_be_filled_is_an_error(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    remote.failing.update({"get_missing_events", "state_ids"})
    middle = remote.make(
        room.version,
        room.room_id,
        remote.user("bob"),
        "m.room.message",
        {"msgtype": "m.text", "body": "m"},
        prev=[room.bob_join.event_id],
    )
    last = remote.make(
        room.version,
        room.room_id,
        remote.user("bob"),
        "m.room.message",
        {"msgtype": "m.text", "body": "l"},
        prev=[middle.event_id],
    )
    status, body = await remote.send(hs, [last.pdu])
    assert status == 200 and "state" in body["pdus"][last.event_id]["error"]
    assert await stored_row(services, last.event_id) is None


@pytest.mark.parametrize("order", ["topic_first", "power_first"])
async def test_fork_resolved_by_v2_whatever_the_arrival_order(
    hs: Any, remote: FakeRemote, order: str
) -> None:
    carol = remote.user("carol")
    room = await joined_room(
        hs,
        remote,
        admins=(carol,),
        power_level_content_override={"events": {"m.room.topic": 0}},
    )
    services = services_of(hs)
    bob = remote.user("bob")
    carol_join = remote.join(room.version, room.room_id, "carol", [room.bob_join.event_id])
    assert (await remote.send(hs, [carol_join.pdu]))[1] == {"pdus": {carol_join.event_id: {}}}
    base = carol_join.event_id
    power_levels = remote.state_after(base)[("m.room.power_levels", "")]
    pl_content = dict((await services.events.get_event(power_levels)).event.content)  # type: ignore[union-attr]
    # Fork on `base`: bob sets the topic (allowed at level 0 there); carol, earlier, raises the
    # topic level to 50. v2 applies carol's power event first, and bob's topic then fails auth.
    raised = {**pl_content, "events": {**pl_content.get("events", {}), "m.room.topic": 50}}
    restrict = remote.make(
        room.version,
        room.room_id,
        carol,
        "m.room.power_levels",
        raised,
        prev=[base],
        state_key="",
        ts=remote._ts + 10,
    )
    topic = remote.make(
        room.version,
        room.room_id,
        bob,
        "m.room.topic",
        {"topic": "bob's"},
        prev=[base],
        state_key="",
        ts=remote._ts + 20,
    )
    first, second = (restrict, topic) if order == "power_first" else (topic, restrict)
    if order.endswith("_threaded"):
        # every resolution in a worker thread (what large ones do)
        services.persister.resolver.thread_threshold = 0  # type: ignore[attr-defined]
    for event in (first, second):
        assert (await remote.send(hs, [event.pdu]))[1] == {"pdus": {event.event_id: {}}}
    ids = await current_ids(services, room.room_id)
    assert ids[("m.room.power_levels", "")] == restrict.event_id
    assert ("m.room.topic", "") not in ids
    # a merge event from the remote on both tips: the state before it is the v2 resolution
    resolved = {**remote.state_after(base), ("m.room.power_levels", ""): restrict.event_id}
    content = {"msgtype": "m.text", "body": "merge"}
    tips = [topic.event_id, restrict.event_id]
    merge = remote.make(
        room.version, room.room_id, carol, "m.room.message", content, prev=tips, state_before=resolved
    )
    assert (await remote.send(hs, [merge.pdu]))[1] == {"pdus": {merge.event_id: {}}}
    assert await services.state.state_ids_at_event(merge.event_id, before=True) == resolved
    assert await current_ids(services, room.room_id) == resolved
    snapshot = await services.state.get(room.room_id)
    assert snapshot is not None and snapshot.extremities == (merge.event_id,)


async def test_room_v12_join_and_message(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote, room_version="12")
    assert room.version.room_ids_as_hashes
    message = say(remote, room, "v12", room.bob_join.event_id)
    assert (await remote.send(hs, [message.pdu]))[1] == {"pdus": {message.event_id: {}}}
    assert message.event_id in await timeline_ids(hs, room)


async def test_concurrent_transactions_for_one_room(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    first = say(remote, room, "first", room.bob_join.event_id)
    second = say(remote, room, "second", first.event_id)
    third = say(remote, room, "third", second.event_id)
    replies = await asyncio.gather(
        remote.send(hs, [third.pdu]), remote.send(hs, [second.pdu]), remote.send(hs, [first.pdu])
    )
    for (status, body), event in zip(replies, (third, second, first), strict=True):
        assert (status, body) == (200, {"pdus": {event.event_id: {}}})
    for event in (first, second, third):
        row = await stored_row(services, event.event_id)
        assert row is not None and not row[0] and row[1] is None
    snapshot = await services.state.get(room.room_id)
    assert snapshot is not None and snapshot.extremities == (third.event_id,)


async def test_backfill_pulls_history_before_a_gap(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    # A gap we only bridge with /state_ids: m3 is then known as an outlier, m1 and m2 not at all.
    remote.failing.add("get_missing_events")
    m1 = say(remote, room, "m1", room.bob_join.event_id)
    m2 = say(remote, room, "m2", m1.event_id)
    m3 = say(remote, room, "m3", m2.event_id)
    m4 = say(remote, room, "m4", m3.event_id)
    assert (await remote.send(hs, [m4.pdu]))[1] == {"pdus": {m4.event_id: {}}}
    assert await stored_row(services, m1.event_id) is None
    assert await services.federation_inbound_store.backward_extremities(room.room_id, 10) == [m3.event_id]
    before = await services.state.get(room.room_id)
    assert before is not None

    stored = await services.federation_events.backfill(
        room.room_id, [services.config.server_name, remote.name], 10
    )
    # m3, an outlier until now, takes its place in the DAG too
    assert {e.event_id for e in stored} == {m1.event_id, m2.event_id, m3.event_id}
    assert "backfill" in remote.requests
    orderings = {}
    for event in (m1, m2, m3):
        row = await services.db.fetchrow(
            "SELECT outlier, rejected_reason, stream_ordering FROM events WHERE event_id = $1", event.event_id
        )
        assert row is not None and not row[0] and row[1] is None
        orderings[event.event_id] = row[2]
    # history: below every live event, the older one lowest
    assert orderings[m1.event_id] < orderings[m2.event_id] < orderings[m3.event_id] < 0
    assert await services.federation_inbound_store.backward_extremities(room.room_id, 10) == []
    assert (
        await services.state.state_ids_at_event(m1.event_id, before=True) == remote.state_before[m1.event_id]
    )
    # backfill changes neither the forward extremities nor the current state
    after = await services.state.get(room.room_id)
    assert after is not None and (after.extremities, after.state) == (before.extremities, before.state)
    # nothing new the second time
    assert await services.federation_events.backfill(room.room_id, [remote.name], 10) == []


async def test_events_of_other_servers_relayed_by_the_origin(hs: Any, remote: FakeRemote) -> None:
    """The origin may pass on events whose senders live elsewhere: they are checked against their
    own server's signature (not the origin's), and that server's ACL applies too."""
    room = await joined_room(hs, remote)
    services = services_of(hs)
    other, other_key = "other.example", ServerSigningKey.from_signing_key(generate_signing_key("o1"))
    services.keyring = InMemoryKeyring(
        (
            ServerVerifyKey(remote.name, remote.key.key_id, remote.key.verify_key, 2**62),
            ServerVerifyKey(other, other_key.key_id, other_key.verify_key, 2**62),
        )
    )
    dave = f"@dave:{other}"
    join = remote.make(
        room.version, room.room_id, dave, "m.room.member", {"membership": "join"},
        prev=[room.bob_join.event_id], state_key=dave, key=other_key, server=other,
    )  # fmt: skip
    hello = remote.make(
        room.version, room.room_id, dave, "m.room.message", {"msgtype": "m.text", "body": "relayed"},
        prev=[join.event_id], key=other_key, server=other,
    )  # fmt: skip
    # signed by the origin instead of by dave's server: refused
    wrong = remote.make(
        room.version, room.room_id, dave, "m.room.message", {"msgtype": "m.text", "body": "wrong"},
        prev=[join.event_id],
    )  # fmt: skip
    status, body = await remote.send(hs, [join.pdu, hello.pdu, wrong.pdu])
    assert status == 200
    assert body["pdus"][join.event_id] == {} and body["pdus"][hello.event_id] == {}
    assert "other.example" in body["pdus"][wrong.event_id]["error"]
    assert hello.event_id in await timeline_ids(hs, room)
    # an ACL denying dave's server refuses his events even when another server relays them
    resp = await hs.put(
        f"/_matrix/client/v3/rooms/{room.room_id}/state/m.room.server_acl",
        json={"allow": ["*"], "deny": [other]},
        headers=auth(room.token),
    )
    assert resp.status == 200
    again = remote.make(
        room.version, room.room_id, dave, "m.room.message", {"msgtype": "m.text", "body": "again"},
        prev=[hello.event_id], key=other_key, server=other,
    )  # fmt: skip
    status, body = await remote.send(hs, [again.pdu])
    assert status == 200 and "ACL" in body["pdus"][again.event_id]["error"]


async def _page_all(hs: Any, room_id: str, token: str, limit: int) -> list[str]:
    """Every event /messages returns walking backwards from now, `limit` at a time."""
    seen: list[str] = []
    frm = ""
    for _ in range(50):
        resp = await hs.get(
            f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit={limit}{frm}", headers=auth(token)
        )
        body = await resp.json()
        assert resp.status == 200, body
        seen.extend(e["event_id"] for e in body["chunk"])
        if "end" not in body:
            return seen
        frm = f"&from={body['end']}"
    raise AssertionError("pagination did not end")


async def test_messages_backfills_past_our_history(hs: Any, remote: FakeRemote) -> None:
    room = await joined_room(hs, remote)
    services = services_of(hs)
    resp = await hs.put(
        f"/_matrix/client/v3/rooms/{room.room_id}/state/m.room.history_visibility",
        json={"history_visibility": "joined"},
        headers=auth(room.token),
    )
    assert resp.status == 200
    [tip] = await remote.learn_room(services, room.room_id)
    # a gap we bridge with /state_ids only: m1 and m2 stay unknown, m3 an outlier
    remote.failing.add("get_missing_events")
    m1 = say(remote, room, "m1", tip)
    m2 = say(remote, room, "m2", m1.event_id)
    m3 = say(remote, room, "m3", m2.event_id)
    m4 = say(remote, room, "m4", m3.event_id)
    assert (await remote.send(hs, [m4.pdu]))[1] == {"pdus": {m4.event_id: {}}}
    assert "backfill" not in remote.requests

    # paging back past the start of our history pulls the rest from the remote server
    seen = await _page_all(hs, room.room_id, room.token, 4)
    assert "backfill" in remote.requests
    order = [seen.index(e.event_id) for e in (m4, m3, m2, m1)]
    assert order == sorted(order)
    # a token into backfilled history works as a starting point
    resp = await hs.get(
        f"/_matrix/client/v3/rooms/{room.room_id}/messages?dir=b&limit=1&from=s-1", headers=auth(room.token)
    )
    assert resp.status == 200

    # history visibility "joined" at the time: a user who joins now does not see backfilled events
    eve = await register(hs)
    resp = await hs.post(
        f"/_matrix/client/v3/rooms/{room.room_id}/join", json={}, headers=auth(eve["access_token"])
    )
    assert resp.status == 200
    eve_seen = await _page_all(hs, room.room_id, eve["access_token"], 10)
    assert not {m1.event_id, m2.event_id, m3.event_id} & set(eve_seen)


async def test_event_citing_an_invalid_auth_event_is_rejected(hs: Any, remote: FakeRemote) -> None:
    """The remote's auth chain carries a power-levels change bob may not make; it is stored as a
    rejected outlier, and the event citing it is rejected."""
    room = await joined_room(hs, remote)
    services = services_of(hs)
    bob = remote.user("bob")
    remote.failing.add("get_missing_events")
    grab = remote.make(
        room.version, room.room_id, bob, "m.room.power_levels", {"users": {bob: 100}},
        prev=[room.bob_join.event_id], state_key="",
    )  # fmt: skip
    topic = remote.make(
        room.version, room.room_id, bob, "m.room.topic", {"topic": "mine"}, prev=[grab.event_id], state_key=""
    )
    assert grab.event_id in topic.auth_event_ids
    status, body = await remote.send(hs, [topic.pdu])
    assert status == 200 and "rejected" in body["pdus"][topic.event_id]["error"]
    grab_row = await stored_row(services, grab.event_id)
    assert grab_row is not None and grab_row[0] and grab_row[1] is not None
    topic_row = await stored_row(services, topic.event_id)
    assert topic_row is not None and topic_row[1] is not None
    assert ("m.room.topic", "") not in await current_ids(services, room.room_id)
