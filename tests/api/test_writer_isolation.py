"""Writer isolation (issue #10): one event whose write fails never fails the others of its batch.

The failing event is handed to the persister below the HTTP validation layer: a fault injected
into the group-commit transaction (both engines), and on PostgreSQL a NUL character, which the
database refuses in text columns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.core.errors import MatrixError
from homeserver.persist.persister import EventDraft, PersistedEvent

from ..conftest import make_config, services_of
from .helpers import auth, register


async def _room(client: Any, token: str) -> str:
    resp = await client.post("/_matrix/client/v3/createRoom", json={}, headers=auth(token))
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["room_id"])


def _draft(room_id: str, sender: str, body: str) -> EventDraft:
    return EventDraft(room_id, "m.room.message", sender, {"msgtype": "m.text", "body": body})


async def _send_batch(client: Any, poison_body: str) -> tuple[list[Any], list[str], list[str]]:
    """20 innocent messages from two users in two rooms and one poisoned one, queued together so
    the writer takes them as one batch; returns (results, innocent bodies, room ids)."""
    services = services_of(client)
    alice, bob = await register(client), await register(client)
    rooms = [await _room(client, alice["access_token"]), await _room(client, bob["access_token"])]
    senders = [alice["user_id"], bob["user_id"]]
    drafts = [_draft(rooms[i % 2], senders[i % 2], f"innocent {i}") for i in range(20)]
    drafts.insert(7, _draft(rooms[1], senders[1], poison_body))
    # gather queues every unit before the writer task runs: one batch.
    results = await asyncio.gather(*(services.persister.send_one(d) for d in drafts), return_exceptions=True)
    return list(results), [f"innocent {i}" for i in range(20)], rooms


async def _timeline_bodies(client: Any, token: str, room_id: str) -> list[str]:
    resp = await client.get(
        f"/_matrix/client/v3/rooms/{room_id}/messages?dir=f&limit=100", headers=auth(token)
    )
    chunk = (await resp.json())["chunk"]
    return [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"]


async def test_fault_in_the_transaction_fails_only_its_event(any_engine_client: Any) -> None:
    client = any_engine_client
    services = services_of(client)
    batch_sizes: list[int] = []

    def inject(persisted: Sequence[PersistedEvent]) -> None:
        if any(p.event.content.get("body") == "poison" for p in persisted):
            batch_sizes.append(len(persisted))
            raise RuntimeError("injected write failure")

    services.persister.fault_injector = inject
    results, innocent, rooms = await _send_batch(client, "poison")
    services.persister.fault_injector = None

    # The poisoned event first shared a transaction with all the others, then with halves of them.
    assert batch_sizes[0] == 21 and batch_sizes[-1] == 1
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], MatrixError) and failures[0].status == 500
    delivered = [r for r in results if isinstance(r, PersistedEvent)]
    assert sorted(p.event.content["body"] for p in delivered) == sorted(innocent)
    # Stream orderings stay in submission order and the rooms keep a linear history.
    orderings = [p.stream_ordering for p in delivered]
    assert orderings == sorted(orderings)

    # Everyone's messages are stored, each room's history is linear, the poisoned one is absent.
    stored_bodies = []
    for room_id in rooms:
        snapshot = await services.state.get(room_id)
        assert snapshot is not None and len(snapshot.extremities) == 1
        rows = await services.events.room_events_between(room_id, 0, 10**9, limit=100, newest_first=False)
        stored_bodies += [s.event.content.get("body") for s in rows if s.event.type == "m.room.message"]
    assert sorted(stored_bodies) == sorted(innocent)


async def test_a_later_send_works_after_a_failed_batch(client: Any) -> None:
    services = services_of(client)
    alice = await register(client)
    room_id = await _room(client, alice["access_token"])

    def inject(persisted: Sequence[PersistedEvent]) -> None:
        raise RuntimeError("disk on fire")

    services.persister.fault_injector = inject
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
        json={"msgtype": "m.text", "body": "lost"},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 500
    assert (await resp.json())["errcode"] == "M_UNKNOWN"
    services.persister.fault_injector = None
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t2",
        json={"msgtype": "m.text", "body": "kept"},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200, await resp.json()
    event_id = (await resp.json())["event_id"]
    stored = await services.events.get_event(event_id)
    assert stored is not None
    snapshot = await services.state.get(room_id)
    assert snapshot is not None and snapshot.extremities == (event_id,)
    assert await _timeline_bodies(client, alice["access_token"], room_id) == ["kept"]


async def test_nul_character_on_postgres_fails_only_its_sender(
    aiohttp_client: Any, pg_database: str, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app_from_config(make_config(tmp_path, "postgres", pg_database)))
    results, innocent, _ = await _send_batch(client, "bad \u0000 byte")
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], MatrixError)
    assert (failures[0].status, failures[0].errcode) == (400, "M_BAD_JSON")
    delivered = sorted(r.event.content["body"] for r in results if isinstance(r, PersistedEvent))
    assert delivered == sorted(innocent)


@pytest.mark.parametrize("poison_at", [0, 20])
async def test_isolation_at_the_edges_of_a_batch(client: Any, poison_at: int) -> None:
    services = services_of(client)
    alice = await register(client)
    room_id = await _room(client, alice["access_token"])
    drafts = [_draft(room_id, alice["user_id"], f"m{i}") for i in range(21)]
    drafts[poison_at] = _draft(room_id, alice["user_id"], "poison")

    def inject(persisted: Sequence[PersistedEvent]) -> None:
        if any(p.event.content.get("body") == "poison" for p in persisted):
            raise RuntimeError("injected")

    services.persister.fault_injector = inject
    results = await asyncio.gather(*(services.persister.send_one(d) for d in drafts), return_exceptions=True)
    services.persister.fault_injector = None
    assert [isinstance(r, BaseException) for r in results] == [i == poison_at for i in range(21)]
    expected = [f"m{i}" for i in range(21) if i != poison_at]
    assert await _timeline_bodies(client, alice["access_token"], room_id) == expected
