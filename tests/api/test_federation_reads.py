"""The federation read endpoints and their access rules, over HTTP with X-Matrix signed requests
from fake remote servers: /backfill, /get_missing_events, /event, /event_auth, /state,
/state_ids, /timestamp_to_event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.events.context import EventContext, EventKind
from homeserver.events.event import Event

from ..conftest import services_of
from .fed_reads_helpers import (
    OTHER,
    REMOTE,
    SERVER,
    create_room,
    fed_get,
    fed_post,
    persist_member,
    put_state,
    q,
    send,
    start,
    start_with,
)
from .helpers import register

BOB = f"@bob:{REMOTE}"


async def _room_with_bob(client: Any, **create: Any) -> tuple[dict[str, Any], str]:
    alice = await register(client, "alice")
    room_id = await create_room(client, alice["access_token"], **create)
    await persist_member(services_of(client), room_id, BOB, "join")
    return alice, room_id


async def _ids(pdus: list[dict[str, Any]], services: Any) -> list[str]:
    """Event ids of served PDUs (computed from the PDU, so a forged id would not match)."""
    if not pdus:
        return []
    version = await services.room_versions.version_of(pdus[0]["room_id"])
    return [Event(p, version).event_id for p in pdus]


async def test_backfill_walks_prev_events_newest_first(aiohttp_client: Any, engine_config: Any) -> None:
    client = await start_with(aiohttp_client, engine_config)
    services = services_of(client)
    alice, room_id = await _room_with_bob(client)
    token = alice["access_token"]
    messages = [await send(client, token, room_id, f"m{i}") for i in range(5)]

    status, body = await fed_get(client, f"/backfill/{q(room_id)}", [("v", messages[4]), ("limit", 3)])
    assert status == 200, body
    assert body["origin"] == SERVER and isinstance(body["origin_server_ts"], int)
    assert await _ids(body["pdus"], services) == [messages[4], messages[3], messages[2]]
    stored = await services.events.get_event(messages[3])
    assert stored is not None and body["pdus"][1] == stored.event.pdu

    # The whole room, deepest first, down to the create event; limits are capped, not refused.
    status, body = await fed_get(client, f"/backfill/{q(room_id)}", [("v", messages[4]), ("limit", 100000)])
    assert status == 200
    depths = [p["depth"] for p in body["pdus"]]
    assert depths == sorted(depths, reverse=True)
    assert body["pdus"][-1]["type"] == "m.room.create"
    assert len(body["pdus"]) == len(set(await _ids(body["pdus"], services)))
    assert BOB in {p.get("state_key") for p in body["pdus"]}

    # Several seeds; unknown seeds and events of other rooms contribute nothing.
    other_room = await create_room(client, token)
    foreign = await send(client, token, other_room, "elsewhere")
    status, body = await fed_get(
        client,
        f"/backfill/{q(room_id)}",
        [("v", messages[1]), ("v", "$unknown"), ("v", foreign), ("limit", 2)],
    )
    assert status == 200 and (await _ids(body["pdus"], services))[0] == messages[1] and len(body["pdus"]) == 2
    status, body = await fed_get(client, f"/backfill/{q(room_id)}", [("v", "$unknown"), ("limit", 5)])
    assert (status, body["pdus"]) == (200, [])

    for args, errcode in [
        ([("limit", 5)], "M_MISSING_PARAM"),
        ([("v", messages[4])], "M_MISSING_PARAM"),
        ([("v", messages[4]), ("limit", 0)], "M_INVALID_PARAM"),
        ([("v", messages[4]), ("limit", -3)], "M_INVALID_PARAM"),
        ([("v", messages[4]), ("limit", "ten")], "M_INVALID_PARAM"),
        ([("v", "not-an-event"), ("limit", 5)], "M_INVALID_PARAM"),
    ]:
        status, body = await fed_get(client, f"/backfill/{q(room_id)}", args)
        assert (status, body["errcode"]) == (400, errcode), args
    status, body = await fed_get(
        client, f"/backfill/{q('!nope:test.local')}", [("v", messages[4]), ("limit", 5)]
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await fed_get(client, "/backfill/not-a-room", [("v", messages[4]), ("limit", 5)])
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_backfill_skips_rejected_and_outliers(aiohttp_client: Any, engine_config: Any) -> None:
    client = await start_with(aiohttp_client, engine_config)
    services = services_of(client)
    alice, room_id = await _room_with_bob(client)
    before = await send(client, alice["access_token"], room_id, "before")
    # A rejected remote event on the tip, then a local message after it (its prev is `before`:
    # rejected events are never extremities).
    snapshot = await services.state.get(room_id)
    assert snapshot is not None
    from homeserver.events.builder import build_event

    from .fed_reads_helpers import KEYS

    state = {k: e.event_id for k, e in snapshot.state.items()}
    rejected = build_event(
        snapshot.version,
        room_id=room_id,
        sender=BOB,
        type="m.room.topic",
        content={"topic": "nope"},
        state_key="",
        prev_event_ids=[before],
        auth_event_ids=[state[("m.room.create", "")], state[("m.room.member", BOB)]],
        depth=snapshot.depth + 1,
        origin_server_ts=services.clock.time_ms(),
        server_name=REMOTE,
        signing_key=KEYS[REMOTE],
    )
    await services.persister.persist(
        [EventContext(rejected, EventKind.REMOTE_NEW, state, rejected_reason="auth_error")]
    )
    outlier = build_event(
        snapshot.version,
        room_id=room_id,
        sender=BOB,
        type="m.room.message",
        content={"body": "outlier"},
        prev_event_ids=[before],
        auth_event_ids=[state[("m.room.create", "")]],
        depth=snapshot.depth + 1,
        origin_server_ts=services.clock.time_ms(),
        server_name=REMOTE,
        signing_key=KEYS[REMOTE],
    )
    await services.persister.persist([EventContext(outlier, EventKind.OUTLIER, {})])

    status, body = await fed_get(
        client,
        f"/backfill/{q(room_id)}",
        [("v", rejected.event_id), ("v", outlier.event_id), ("limit", 3)],
    )
    assert status == 200
    served = await _ids(body["pdus"], services)
    assert rejected.event_id not in served and outlier.event_id not in served
    assert served and served[0] == before  # the walk went on through the rejected event
    # Rejected events are unknown to /event_auth and /state_ids; an outlier has no state.
    status, body = await fed_get(client, f"/event_auth/{q(room_id)}/{q(rejected.event_id)}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await fed_get(client, f"/state_ids/{q(room_id)}", {"event_id": outlier.event_id})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # /event serves what we hold (auth events often are outliers), as Synapse does.
    status, body = await fed_get(client, f"/event/{q(outlier.event_id)}")
    assert status == 200 and await _ids(body["pdus"], services) == [outlier.event_id]


async def test_get_missing_events(aiohttp_client: Any, engine_config: Any) -> None:
    client = await start_with(aiohttp_client, engine_config)
    services = services_of(client)
    alice, room_id = await _room_with_bob(client)
    token = alice["access_token"]
    m = [await send(client, token, room_id, f"m{i}") for i in range(30)]
    path = f"/get_missing_events/{q(room_id)}"

    status, body = await fed_post(client, path, {"earliest_events": [m[1]], "latest_events": [m[5]]})
    assert status == 200, body
    assert await _ids(body["events"], services) == [m[2], m[3], m[4]]  # oldest first, not the latest
    depth = (await services.events.get_event(m[4])).event.depth  # type: ignore[union-attr]
    status, body = await fed_post(
        client, path, {"earliest_events": [m[1]], "latest_events": [m[5]], "min_depth": depth}
    )
    assert await _ids(body["events"], services) == [m[4]]
    status, body = await fed_post(client, path, {"earliest_events": [], "latest_events": [m[29]], "limit": 2})
    assert await _ids(body["events"], services) == [m[27], m[28]]
    # The limit is capped at 20; the default is 10.
    status, body = await fed_post(
        client, path, {"earliest_events": [], "latest_events": [m[29]], "limit": 500}
    )
    assert len(body["events"]) == 20
    status, body = await fed_post(client, path, {"earliest_events": [], "latest_events": [m[29]]})
    assert len(body["events"]) == 10
    # Latest events of other rooms or unknown ones give nothing.
    status, body = await fed_post(client, path, {"earliest_events": [], "latest_events": ["$nope"]})
    assert (status, body) == (200, {"events": []})

    for bad, status_code, errcode in [
        ({"latest_events": [m[5]]}, 400, "M_MISSING_PARAM"),
        ({"earliest_events": []}, 400, "M_MISSING_PARAM"),
        ({"earliest_events": "x", "latest_events": []}, 400, "M_BAD_JSON"),
        ({"earliest_events": [1], "latest_events": []}, 400, "M_BAD_JSON"),
        ({"earliest_events": [], "latest_events": ["bad"]}, 400, "M_INVALID_PARAM"),
        ({"earliest_events": [], "latest_events": [], "limit": "5"}, 400, "M_BAD_JSON"),
        ({"earliest_events": [], "latest_events": [], "limit": -1}, 400, "M_INVALID_PARAM"),
        ({"earliest_events": [], "latest_events": [], "min_depth": -1}, 400, "M_INVALID_PARAM"),
    ]:
        status, body = await fed_post(client, path, bad)
        assert (status, body["errcode"]) == (status_code, errcode), bad


async def test_event_event_auth_state_and_state_ids(aiohttp_client: Any, engine_config: Any) -> None:
    client = await start_with(aiohttp_client, engine_config)
    services = services_of(client)
    alice, room_id = await _room_with_bob(client)
    token = alice["access_token"]
    topic1 = await put_state(client, token, room_id, "m.room.topic", {"topic": "one"})
    message = await send(client, token, room_id, "hello")
    topic2 = await put_state(client, token, room_id, "m.room.topic", {"topic": "two"})

    status, body = await fed_get(client, f"/event/{q(message)}")
    assert status == 200, body
    assert body["origin"] == SERVER and len(body["pdus"]) == 1
    assert await _ids(body["pdus"], services) == [message] and body["pdus"][0]["content"]["body"] == "hello"
    status, body = await fed_get(client, f"/event/{q('$unknown')}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await fed_get(client, "/event/not-an-event-id")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")

    # The auth chain: closed under auth_events, without the event itself.
    status, body = await fed_get(client, f"/event_auth/{q(room_id)}/{q(message)}")
    assert status == 200, body
    chain = {
        eid: pdu
        for eid, pdu in zip(await _ids(body["auth_chain"], services), body["auth_chain"], strict=True)
    }
    stored = await services.events.get_event(message)
    assert stored is not None and set(stored.event.auth_event_ids) <= set(chain)
    assert message not in chain
    assert "m.room.create" in {p["type"] for p in chain.values()}
    for pdu in chain.values():
        assert set(pdu.get("auth_events", [])) <= set(chain)

    # The state before an event: a state event's own change is not in it.
    status, body = await fed_get(client, f"/state_ids/{q(room_id)}", {"event_id": topic2})
    assert status == 200, body
    expected = await services.state.state_ids_at_event(topic2, before=True)
    assert expected is not None and set(body["pdu_ids"]) == set(expected.values())
    assert topic1 in body["pdu_ids"] and topic2 not in body["pdu_ids"]
    member_bob = expected[("m.room.member", BOB)]
    assert member_bob in body["pdu_ids"]
    assert set(body["auth_chain_ids"]) == await services.state_groups.auth_chain_ids(body["pdu_ids"])
    state_ids = body
    status, body = await fed_get(client, f"/state/{q(room_id)}", {"event_id": topic2})
    assert status == 200
    assert set(await _ids(body["pdus"], services)) == set(state_ids["pdu_ids"])
    assert set(await _ids(body["auth_chain"], services)) == set(state_ids["auth_chain_ids"])

    for path in (f"/state_ids/{q(room_id)}", f"/state/{q(room_id)}"):
        status, body = await fed_get(client, path)
        assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
        status, body = await fed_get(client, path, {"event_id": "$unknown"})
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # An event of another room is not found in this one.
    other_room = await create_room(client, token)
    foreign = await send(client, token, other_room, "elsewhere")
    status, body = await fed_get(client, f"/state_ids/{q(room_id)}", {"event_id": foreign})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await fed_get(client, f"/event_auth/{q(room_id)}/{q(foreign)}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def test_origin_not_in_room_and_world_readable(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice, room_id = await _room_with_bob(client)
    token = alice["access_token"]
    message = await send(client, token, room_id, "secret")
    probes: list[tuple[str, Any, Any]] = [
        ("get", f"/backfill/{q(room_id)}", [("v", message), ("limit", 5)]),
        ("get", f"/event/{q(message)}", None),
        ("get", f"/event_auth/{q(room_id)}/{q(message)}", None),
        ("get", f"/state/{q(room_id)}", {"event_id": message}),
        ("get", f"/state_ids/{q(room_id)}", {"event_id": message}),
        ("get", f"/timestamp_to_event/{q(room_id)}", {"ts": 0, "dir": "f"}),
        ("post", f"/get_missing_events/{q(room_id)}", {"earliest_events": [], "latest_events": [message]}),
    ]

    async def call(kind: str, path: str, args: Any, origin: str) -> tuple[int, Any]:
        if kind == "get":
            return await fed_get(client, path, args, origin=origin)
        return await fed_post(client, path, args, origin=origin)

    for probe in probes:
        status, body = await call(*probe, origin=REMOTE)
        assert status == 200, (probe, body)
        status, body = await call(*probe, origin=OTHER)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), probe

    # A world-readable room may be read by any server.
    await put_state(
        client, token, room_id, "m.room.history_visibility", {"history_visibility": "world_readable"}
    )
    for probe in probes:
        status, body = await call(*probe, origin=OTHER)
        assert status == 200, (probe, body)

    # Bob leaves: his server is no longer in the room (and it is not world-readable any more).
    await put_state(client, token, room_id, "m.room.history_visibility", {"history_visibility": "shared"})
    await persist_member(services_of(client), room_id, BOB, "leave")
    for probe in probes:
        status, body = await call(*probe, origin=REMOTE)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), probe


async def test_server_acl_denies_origin(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice, room_id = await _room_with_bob(client, initial_state=[])
    token = alice["access_token"]
    message = await send(client, token, room_id, "hi")
    await put_state(
        client, token, room_id, "m.room.history_visibility", {"history_visibility": "world_readable"}
    )
    await put_state(client, token, room_id, "m.room.server_acl", {"allow": ["*"], "deny": ["remote.*"]})
    for path, args in [
        (f"/backfill/{q(room_id)}", [("v", message), ("limit", 5)]),
        (f"/event/{q(message)}", None),
        (f"/event_auth/{q(room_id)}/{q(message)}", None),
        (f"/state_ids/{q(room_id)}", {"event_id": message}),
        (f"/timestamp_to_event/{q(room_id)}", {"ts": 0, "dir": "f"}),
        (f"/hierarchy/{q(room_id)}", None),
    ]:
        status, body = await fed_get(client, path, args)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), path
        status, body = await fed_get(client, path, args, origin=OTHER)  # world-readable, allowed
        assert status == 200, (path, body)
    status, body = await fed_post(
        client, f"/get_missing_events/{q(room_id)}", {"earliest_events": [], "latest_events": [message]}
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize(
    "visibility, shown",
    [
        # which of (before the invite, while invited, after the join) the server sees in full
        ("joined", (False, False, True)),
        ("invited", (False, True, True)),
        ("shared", (True, True, True)),
        ("world_readable", (True, True, True)),
    ],
)
async def test_history_visibility_for_servers(
    aiohttp_client: Any, engine_config: Any, visibility: str, shown: tuple[bool, bool, bool]
) -> None:
    client = await start_with(aiohttp_client, engine_config)
    services = services_of(client)
    alice = await register(client, "alice")
    token = alice["access_token"]
    room_id = await create_room(
        client,
        token,
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": visibility},
            }
        ],
    )
    before = await send(client, token, room_id, "before")
    await persist_member(services, room_id, BOB, "invite", sender=alice["user_id"])
    invited = await send(client, token, room_id, "invited")
    await persist_member(services, room_id, BOB, "join")
    after = await send(client, token, room_id, "after")

    status, body = await fed_get(client, f"/backfill/{q(room_id)}", [("v", after), ("limit", 50)])
    assert status == 200
    by_id = dict(zip(await _ids(body["pdus"], services), body["pdus"], strict=True))
    for event_id, full in zip((before, invited, after), shown, strict=True):
        # Withheld events are served redacted: same id, hashes and signatures, no content.
        assert event_id in by_id
        assert ("body" in by_id[event_id]["content"]) is full, (visibility, event_id)
        status, single = await fed_get(client, f"/event/{q(event_id)}")
        assert status == 200 and ("body" in single["pdus"][0]["content"]) is full
        # The state at an event the server may not see is refused.
        status, state = await fed_get(client, f"/state_ids/{q(room_id)}", {"event_id": event_id})
        assert status == (200 if full else 403), state
    # get_missing_events filters the same way.
    status, body = await fed_post(
        client,
        f"/get_missing_events/{q(room_id)}",
        {"earliest_events": [], "latest_events": [after], "limit": 20},
    )
    missing = dict(zip(await _ids(body["events"], services), body["events"], strict=True))
    assert ("body" in missing[before]["content"]) is shown[0]
    assert ("body" in missing[invited]["content"]) is shown[1]
    # /timestamp_to_event only points at events the server may see.
    stored = await services.events.get_event(before)
    assert stored is not None
    status, found = await fed_get(
        client, f"/timestamp_to_event/{q(room_id)}", {"ts": stored.event.origin_server_ts, "dir": "f"}
    )
    assert status == 200
    assert (found["event_id"] == before) is shown[0]


async def test_redacted_events_are_served_redacted(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    services = services_of(client)
    alice, room_id = await _room_with_bob(client)
    message = await send(client, alice["access_token"], room_id, "oops")
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/redact/{message}/txn1",
        json={},
        headers={"Authorization": f"Bearer {alice['access_token']}"},
    )
    assert resp.status == 200
    status, body = await fed_get(client, f"/event/{q(message)}")
    assert status == 200 and body["pdus"][0]["content"] == {}
    assert await _ids(body["pdus"], services) == [message]


async def test_timestamp_to_event(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    services = services_of(client)
    alice, room_id = await _room_with_bob(client)
    first = await send(client, alice["access_token"], room_id, "first")
    stored = await services.events.get_event(first)
    assert stored is not None
    ts = stored.event.origin_server_ts
    path = f"/timestamp_to_event/{q(room_id)}"
    status, body = await fed_get(client, path, {"ts": ts, "dir": "b"})
    assert (status, body) == (200, {"event_id": first, "origin_server_ts": ts})
    status, body = await fed_get(client, path, {"ts": ts + 10**9, "dir": "f"})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await fed_get(client, path, {"ts": 0, "dir": "b"})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    for args, errcode in [
        ({"dir": "f"}, "M_MISSING_PARAM"),
        ({"ts": ts}, "M_MISSING_PARAM"),
        ({"ts": ts, "dir": "x"}, "M_INVALID_PARAM"),
        ({"ts": "soon", "dir": "f"}, "M_INVALID_PARAM"),
    ]:
        status, body = await fed_get(client, path, args)
        assert (status, body["errcode"]) == (400, errcode), args
    status, body = await fed_get(
        client, f"/timestamp_to_event/{q('!unknown:test.local')}", {"ts": ts, "dir": "f"}
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


async def test_unsigned_requests_are_refused(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    _, room_id = await _room_with_bob(client)
    resp = await client.get(f"/_matrix/federation/v1/state_ids/{q(room_id)}?event_id=%24x")
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_erased_senders_are_served_redacted(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    services = services_of(client)
    alice, room_id = await _room_with_bob(client)
    carol = await register(client, "carol")
    resp = await client.post(
        f"/_matrix/client/v3/join/{room_id}",
        json={},
        headers={"Authorization": f"Bearer {carol['access_token']}"},
    )
    assert resp.status == 200
    kept = await send(client, alice["access_token"], room_id, "kept")
    erased = await send(client, carol["access_token"], room_id, "forget me")
    await services.erasure.erase_user(carol["user_id"])
    status, body = await fed_get(client, f"/backfill/{q(room_id)}", [("v", erased), ("limit", 2)])
    assert status == 200
    by_id = dict(zip(await _ids(body["pdus"], services), body["pdus"], strict=True))
    assert by_id[erased]["content"] == {} and by_id[kept]["content"]["body"] == "kept"
