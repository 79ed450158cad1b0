"""Reporting events, rooms and users; the reports store, on both engines."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.storage.stores.reports import ReportQuery, ReportStore

from ..conftest import OPEN_LIMITS, services_of
from .helpers import auth, register

V3 = "/_matrix/client/v3"


@pytest.fixture
async def client(aiohttp_client: Any, engine_config: Any) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(rc_reports=OPEN_LIMITS)))


async def ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def expect_error(resp: Any, status: int, errcode: str) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert body["errcode"] == errcode, body
    return dict(body)


async def create_room(client: Any, token: str, **body: Any) -> str:
    data = await ok(await client.post(f"{V3}/createRoom", json=body, headers=auth(token)))
    return str(data["room_id"])


async def send_text(client: Any, token: str, room_id: str, text: str, txn: str) -> str:
    resp = await client.put(
        f"{V3}/rooms/{room_id}/send/m.room.message/{txn}",
        json={"msgtype": "m.text", "body": text},
        headers=auth(token),
    )
    return str((await ok(resp))["event_id"])


def report_event(client: Any, token: str, room_id: str, event_id: str, body: Any) -> Any:
    return client.post(f"{V3}/rooms/{room_id}/report/{event_id}", json=body, headers=auth(token))


def store_of(client: Any) -> ReportStore:
    return services_of(client).report_store


async def test_report_event(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    room_id = await create_room(client, alice["access_token"], preset="public_chat")
    await ok(await client.post(f"{V3}/join/{room_id}", json={}, headers=auth(bob["access_token"])))
    event_id = await send_text(client, alice["access_token"], room_id, "rude", "t1")

    body = await ok(
        await report_event(client, bob["access_token"], room_id, event_id, {"reason": "rude", "score": -100})
    )
    assert body == {}
    await ok(await report_event(client, bob["access_token"], room_id, event_id, {}))  # all optional
    # The r0 path (Synapse serves both).
    resp = await client.post(
        f"/_matrix/client/r0/rooms/{room_id}/report/{event_id}", json={}, headers=auth(bob["access_token"])
    )
    await ok(resp)

    reports, total = await store_of(client).list_reports(ReportQuery(kind="event"))
    assert total == 3
    first = reports[-1]  # newest first
    assert (first.reporter, first.room_id, first.event_id) == (bob["user_id"], room_id, event_id)
    assert (first.target_user_id, first.reason, first.score) == (alice["user_id"], "rude", -100)
    assert reports[0].reason is None and reports[0].score is None
    assert first.received_ts > 0


async def test_report_event_hidden_cases(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    carol = await register(client)
    room_id = await create_room(
        client,
        alice["access_token"],
        preset="public_chat",
        initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}],
    )
    other_room = await create_room(client, alice["access_token"])
    before = await send_text(client, alice["access_token"], room_id, "before bob", "t1")
    await ok(await client.post(f"{V3}/join/{room_id}", json={}, headers=auth(bob["access_token"])))
    after = await send_text(client, alice["access_token"], room_id, "after bob", "t2")
    elsewhere = await send_text(client, alice["access_token"], other_room, "elsewhere", "t3")

    not_found = "M_NOT_FOUND"
    # Unknown event, an event of another room, an event before the reporter could see the room.
    await expect_error(await report_event(client, bob["access_token"], room_id, "$nope", {}), 404, not_found)
    await expect_error(
        await report_event(client, bob["access_token"], room_id, elsewhere, {}), 404, not_found
    )
    await expect_error(await report_event(client, bob["access_token"], room_id, before, {}), 404, not_found)
    # Not joined: never joined, or left since.
    await expect_error(await report_event(client, carol["access_token"], room_id, after, {}), 404, not_found)
    await ok(await report_event(client, bob["access_token"], room_id, after, {}))
    await ok(await client.post(f"{V3}/rooms/{room_id}/leave", json={}, headers=auth(bob["access_token"])))
    await expect_error(await report_event(client, bob["access_token"], room_id, after, {}), 404, not_found)
    # A malformed room id is just unknown.
    await expect_error(await report_event(client, bob["access_token"], "nonsense", after, {}), 404, not_found)
    # Bad parameters.
    for body in ({"reason": 5}, {"score": "-100"}, {"score": True}, {"score": None}, {"score": 2**60}):
        await expect_error(
            await report_event(client, alice["access_token"], room_id, after, body), 400, "M_BAD_JSON"
        )
    resp = await client.post(f"{V3}/rooms/{room_id}/report/{after}", headers=auth(alice["access_token"]))
    await expect_error(resp, 400, "M_NOT_JSON")
    _, total = await store_of(client).list_reports()
    assert total == 1


async def test_report_room(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    room_id = await create_room(client, alice["access_token"])  # private: bob is not a member
    url = f"{V3}/rooms/{room_id}/report"
    await ok(await client.post(url, json={"reason": "spam room"}, headers=auth(bob["access_token"])))
    await ok(await client.post(url, json={"reason": ""}, headers=auth(bob["access_token"])))
    await expect_error(
        await client.post(url, json={}, headers=auth(bob["access_token"])), 400, "M_MISSING_PARAM"
    )
    await expect_error(
        await client.post(url, json={"reason": ["x"]}, headers=auth(bob["access_token"])), 400, "M_BAD_JSON"
    )
    resp = await client.post(
        f"{V3}/rooms/!unknown:test.local/report", json={"reason": "x"}, headers=auth(bob["access_token"])
    )
    await expect_error(resp, 404, "M_NOT_FOUND")
    # v3 only (new in v1.13).
    resp = await client.post(
        f"/_matrix/client/r0/rooms/{room_id}/report", json={"reason": "x"}, headers=auth(bob["access_token"])
    )
    assert resp.status == 404
    reports, total = await store_of(client).list_reports(ReportQuery(kind="room", room_id=room_id))
    assert total == 2
    assert [r.reason for r in reports] == ["", "spam room"]
    assert all(r.reporter == bob["user_id"] and r.event_id is None for r in reports)


async def test_report_user(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    url = f"{V3}/users/{bob['user_id']}/report"
    await ok(await client.post(url, json={"reason": "harassment"}, headers=auth(alice["access_token"])))
    # Unknown and remote users: accepted, nothing stored (existence is not revealed).
    for target in ("@ghost:test.local", "@someone:remote.example"):
        await ok(
            await client.post(
                f"{V3}/users/{target}/report", json={"reason": "x"}, headers=auth(alice["access_token"])
            )
        )
    await expect_error(
        await client.post(url, json={"reason": "x" * 1001}, headers=auth(alice["access_token"])),
        400,
        "M_BAD_JSON",
    )
    await expect_error(
        await client.post(url, json={}, headers=auth(alice["access_token"])), 400, "M_MISSING_PARAM"
    )
    await expect_error(
        await client.post(
            f"{V3}/users/not-a-user/report", json={"reason": "x"}, headers=auth(alice["access_token"])
        ),
        400,
        "M_INVALID_PARAM",
    )
    reports, total = await store_of(client).list_reports(ReportQuery(kind="user"))
    assert total == 1
    assert (reports[0].reporter, reports[0].target_user_id, reports[0].reason) == (
        alice["user_id"],
        bob["user_id"],
        "harassment",
    )


async def test_reports_are_rate_limited(aiohttp_client: Any, engine_config: Any) -> None:
    client = await aiohttp_client(
        create_app_from_config(engine_config(rc_reports={"per_second": 0.001, "burst_count": 2}))
    )
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"])
    url = f"{V3}/rooms/{room_id}/report"
    for _ in range(2):
        await ok(await client.post(url, json={"reason": "x"}, headers=auth(alice["access_token"])))
    body = await expect_error(
        await client.post(url, json={"reason": "x"}, headers=auth(alice["access_token"])),
        429,
        "M_LIMIT_EXCEEDED",
    )
    assert body["retry_after_ms"] > 0
    # Per user: someone else may still report.
    bob = await register(client)
    await ok(await client.post(url, json={"reason": "x"}, headers=auth(bob["access_token"])))


async def test_store_listing(client: Any) -> None:
    store = store_of(client)
    ids = []
    for i in range(5):
        ids.append(
            await store.insert_report(
                "event" if i % 2 == 0 else "room",
                f"@r{i % 2}:test.local",
                received_ts=1000 + i,
                room_id="!a:test.local",
                event_id=f"$e{i}" if i % 2 == 0 else None,
                reason=f"reason {i}",
            )
        )
    assert ids == sorted(ids) and len(set(ids)) == 5
    page, total = await store.list_reports(limit=2)
    assert total == 5 and [r.id for r in page] == ids[::-1][:2]
    page, total = await store.list_reports(offset=2, limit=2, newest_first=False)
    assert [r.id for r in page] == ids[2:4]
    page, total = await store.list_reports(ReportQuery(reporter="@r1:test.local"))
    assert total == 2 and {r.kind for r in page} == {"room"}
    report = await store.get_report(ids[0])
    assert report is not None and report.event_id == "$e0" and report.received_ts == 1000
    assert await store.delete_report(ids[0]) is True
    assert await store.delete_report(ids[0]) is False
    assert await store.get_report(ids[0]) is None
    with pytest.raises(ValueError):
        await store.insert_report("spam", "@x:test.local", received_ts=1)
