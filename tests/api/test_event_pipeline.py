"""The event pipeline's contract: the persister takes local and remote `EventContext`s.

A room forks (a local message and a hand-built remote state event on the same prev_event): the
test checks the forward extremities, the current state (memory and database), the state before
and after each event, and the rows published on the stream bus; an outlier and a rejected event
change neither extremities nor current state. Both engines, through the running app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from signedjson.key import generate_signing_key

from homeserver.container import Services
from homeserver.core.streams import EventsRow, Stream, StreamRow, row_from_json, row_to_json
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events.builder import build_event
from homeserver.events.context import EventContext, EventKind
from homeserver.events.event import Event
from homeserver.persist.apply import MAX_GROUP_HOPS
from homeserver.persist.persister import EventDraft

from ..conftest import services_of
from .helpers import auth, register

REMOTE = "remote.test"
REMOTE_KEY = ServerSigningKey.from_signing_key(generate_signing_key("rem1"))
BOB = f"@bob:{REMOTE}"
StateIds = dict[tuple[str, str], str]


class Recorder:
    def __init__(self) -> None:
        self.rows: list[EventsRow] = []
        self.positions: list[int] = []

    def __call__(self, position: int, rows: Sequence[StreamRow]) -> None:
        self.positions.append(position)
        self.rows.extend(r for r in rows if isinstance(r, EventsRow))

    def by_id(self, event_id: str) -> EventsRow:
        return next(r for r in self.rows if r.event_id == event_id)


async def _current_ids(services: Services, room_id: str) -> StateIds:
    snapshot = await services.state.get(room_id)
    assert snapshot is not None
    return {k: e.event_id for k, e in snapshot.state.items()}


async def _remote_event(
    services: Services,
    room_id: str,
    *,
    type: str,
    content: dict[str, Any],
    state_key: str | None,
    prev: list[str],
    state_before: Mapping[tuple[str, str], str],
    depth: int,
) -> Event:
    snapshot = await services.state.get(room_id)
    assert snapshot is not None
    auth_keys = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", BOB)]
    return build_event(
        snapshot.version,
        room_id=room_id,
        sender=BOB,
        type=type,
        content=content,
        state_key=state_key,
        prev_event_ids=prev,
        auth_event_ids=[state_before[k] for k in auth_keys if k in state_before],
        depth=depth,
        origin_server_ts=services.clock.time_ms(),
        server_name=REMOTE,
        signing_key=REMOTE_KEY,
    )


async def _db_extremities(services: Services, room_id: str) -> set[str]:
    return set(await services.rooms.get_forward_extremities(room_id))


async def _send(client: Any, token: str, room_id: str, txn: str, body: str) -> str:
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
        json={"msgtype": "m.text", "body": body},
        headers=auth(token),
    )
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["event_id"])


async def test_persister_contract_fork_outlier_rejected(any_engine_client: Any) -> None:
    client = any_engine_client
    services = services_of(client)
    recorder = Recorder()
    services.bus.subscribe(Stream.EVENTS, recorder)
    alice = await register(client)
    token = alice["access_token"]
    # Anyone may set the topic: the fork's remote topic change passes state resolution's auth checks.
    resp = await client.post(
        "/_matrix/client/v3/createRoom",
        json={"preset": "public_chat", "power_level_content_override": {"events": {"m.room.topic": 0}}},
        headers=auth(token),
    )
    room_id = (await resp.json())["room_id"]
    snapshot = await services.state.get(room_id)
    assert snapshot is not None and len(snapshot.extremities) == 1

    # A remote user joins: a remote context extending the only tip (linear, state stored anew).
    tip = snapshot.extremities[0]
    before_join = await _current_ids(services, room_id)
    join = await _remote_event(
        services,
        room_id,
        type="m.room.member",
        content={"membership": "join"},
        state_key=BOB,
        prev=[tip],
        state_before=before_join,
        depth=snapshot.depth + 1,
    )
    [persisted] = await services.persister.persist([EventContext(join, EventKind.REMOTE_NEW, before_join)])
    assert persisted.is_live
    p = join.event_id
    assert await _db_extremities(services, room_id) == {p}
    state_p = await _current_ids(services, room_id)
    assert state_p == {**before_join, ("m.room.member", BOB): p}
    assert (await services.state.get(room_id)).membership(BOB) == "join"  # type: ignore[union-attr]
    assert await services.state.state_ids_at_event(p, before=True) == before_join
    assert await services.state.state_ids_at_event(p) == state_p

    # Fork: a local message L and a remote topic change R, both on P.
    local = await _send(client, token, room_id, "fork-1", "local side")
    depth = (await services.state.get(room_id)).depth  # type: ignore[union-attr]
    topic = await _remote_event(
        services,
        room_id,
        type="m.room.topic",
        content={"topic": "from the other side"},
        state_key="",
        prev=[p],
        state_before=state_p,
        depth=depth,
    )
    await services.persister.persist([EventContext(topic, EventKind.REMOTE_NEW, state_p)])
    r = topic.event_id

    assert await _db_extremities(services, room_id) == {local, r}
    snapshot = await services.state.get(room_id)
    assert snapshot is not None
    assert set(snapshot.extremities) == {local, r}
    expected_current = {**state_p, ("m.room.topic", ""): r}
    assert await _current_ids(services, room_id) == expected_current
    assert await services.rooms.get_current_state_ids(room_id) == expected_current
    # The state at each event of the fork.
    assert await services.state.state_ids_at_event(local, before=True) == state_p
    assert await services.state.state_ids_at_event(local) == state_p
    assert await services.state.state_ids_at_event(r, before=True) == state_p
    assert await services.state.state_ids_at_event(r) == expected_current

    # The rows on the bus: both sides, live, with their stream orderings in order.
    row_l, row_r = recorder.by_id(local), recorder.by_id(r)
    assert (row_l.room_id, row_l.type, row_l.state_key, row_l.sender) == (
        room_id,
        "m.room.message",
        None,
        alice["user_id"],
    )
    assert row_l.txn_id == "fork-1" and row_l.device_id == alice["device_id"]
    assert (row_r.type, row_r.state_key, row_r.sender, row_r.is_live) == ("m.room.topic", "", BOB, True)
    assert row_l.stream_ordering < row_r.stream_ordering
    assert recorder.by_id(p).membership == "join"
    assert row_from_json(Stream.EVENTS, row_to_json(row_r)) == row_r
    # A worker that missed them reads the same rows back from the database.
    caught_up = await services.bus.rows_since(Stream.EVENTS, row_l.stream_ordering - 1)
    assert [(x.event_id, x.stream_ordering, x.type, x.state_key) for x in caught_up][:2] == [
        (local, row_l.stream_ordering, "m.room.message", None),
        (r, row_r.stream_ordering, "m.room.topic", ""),
    ]

    # The next local event merges the fork: prev_events are both tips.
    merged = await _send(client, token, room_id, "fork-2", "after the fork")
    stored = await services.events.get_event(merged)
    assert stored is not None and set(stored.event.prev_event_ids) == {local, r}
    assert await _db_extremities(services, room_id) == {merged}
    assert await services.state.state_ids_at_event(merged) == expected_current

    # An outlier: stored, announced as an outlier, but neither a tip nor state.
    outlier = await _remote_event(
        services,
        room_id,
        type="m.room.member",
        content={"membership": "join", "displayname": "Outlier"},
        state_key=f"@carol:{REMOTE}",
        prev=[merged],
        state_before=expected_current,
        depth=stored.event.depth + 1,
    )
    await services.persister.persist([EventContext(outlier, EventKind.OUTLIER, {})])
    assert await _db_extremities(services, room_id) == {merged}
    assert await _current_ids(services, room_id) == expected_current
    assert await services.rooms.get_current_state_ids(room_id) == expected_current
    assert recorder.by_id(outlier.event_id).outlier
    assert not recorder.by_id(outlier.event_id).is_live
    assert await services.state.state_ids_at_event(outlier.event_id) is None

    # A rejected state event: stored with its reason, state unchanged around it.
    bad_topic = await _remote_event(
        services,
        room_id,
        type="m.room.topic",
        content={"topic": "rejected"},
        state_key="",
        prev=[merged],
        state_before=expected_current,
        depth=stored.event.depth + 1,
    )
    await services.persister.persist(
        [EventContext(bad_topic, EventKind.REMOTE_NEW, expected_current, rejected_reason="auth_error")]
    )
    assert await _db_extremities(services, room_id) == {merged}
    assert await _current_ids(services, room_id) == expected_current
    assert await services.rooms.get_current_state_ids(room_id) == expected_current
    assert recorder.by_id(bad_topic.event_id).rejected
    assert await services.state.state_ids_at_event(bad_topic.event_id) == expected_current
    reason = await services.db.fetchval(
        "SELECT rejected_reason FROM events WHERE event_id = $1", bad_topic.event_id
    )
    assert reason == "auth_error"

    # Clients saw the fork's remote side, and neither the outlier nor the rejected event.
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(token))
    body = await resp.json()
    room = body["rooms"]["join"][room_id]
    seen = {e["event_id"] for e in room["timeline"]["events"]} | {
        e["event_id"] for e in room["state"]["events"]
    }
    assert r in seen and merged in seen
    assert outlier.event_id not in seen and bad_topic.event_id not in seen
    resp = await client.get(f"/_matrix/client/v3/rooms/{room_id}/state/m.room.topic", headers=auth(token))
    assert (await resp.json()) == {"topic": "from the other side"}


async def test_soft_failed_event_is_stored_but_changes_nothing(any_engine_client: Any) -> None:
    client = any_engine_client
    services = services_of(client)
    alice = await register(client)
    resp = await client.post(
        "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth(alice["access_token"])
    )
    room_id = (await resp.json())["room_id"]
    snapshot = await services.state.get(room_id)
    assert snapshot is not None
    before = await _current_ids(services, room_id)
    soft = await _remote_event(
        services,
        room_id,
        type="m.room.name",
        content={"name": "soft"},
        state_key="",
        prev=list(snapshot.extremities),
        state_before=before,
        depth=snapshot.depth + 1,
    )
    await services.persister.persist([EventContext(soft, EventKind.REMOTE_NEW, before, soft_failed=True)])
    assert await _db_extremities(services, room_id) == set(snapshot.extremities)
    assert await _current_ids(services, room_id) == before
    # Soft-failed events passed auth against their own state: the state after includes them.
    after = {**before, ("m.room.name", ""): soft.event_id}
    assert await services.state.state_ids_at_event(soft.event_id) == after
    # Stored, but never shown to clients.
    assert await services.events.get_event(soft.event_id) is not None
    resp = await client.get(
        f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50", headers=auth(alice["access_token"])
    )
    chunk = (await resp.json())["chunk"]
    assert chunk and soft.event_id not in {e["event_id"] for e in chunk}


async def test_room_from_before_state_groups_gets_one_on_its_next_event(any_engine_client: Any) -> None:
    """A database migrated from before state groups: its rooms have no current group until their
    next event, which stores the current state in full first."""
    client = any_engine_client
    services = services_of(client)
    alice = await register(client)
    token = alice["access_token"]
    resp = await client.post("/_matrix/client/v3/createRoom", json={"name": "old"}, headers=auth(token))
    room_id = (await resp.json())["room_id"]
    state = await _current_ids(services, room_id)
    # What the migration leaves behind: no group for the room, nothing cached.
    await services.db.execute("UPDATE rooms SET current_state_group = NULL WHERE room_id = $1", room_id)
    services.state.evict(room_id)
    snapshot = await services.state.get(room_id)
    assert snapshot is not None and snapshot.state_group is None

    event_id = await _send(client, token, room_id, "legacy-1", "first since the upgrade")
    snapshot = await services.state.get(room_id)
    assert snapshot is not None and snapshot.state_group is not None
    assert await services.state_groups.get_current_group(room_id) == snapshot.state_group
    assert await services.state.state_ids_at_event(event_id, before=True) == state
    assert await services.state_groups.get_group_state(snapshot.state_group) == state


async def test_long_delta_chains_are_cut_by_a_full_group(client: Any) -> None:
    """State groups are deltas, but never more than MAX_GROUP_HOPS in a row: then a full group."""
    services = services_of(client)
    alice = await register(client)
    resp = await client.post("/_matrix/client/v3/createRoom", json={}, headers=auth(alice["access_token"]))
    room_id = (await resp.json())["room_id"]
    drafts = [
        EventDraft(room_id, "m.room.topic", alice["user_id"], {"topic": f"t{i}"}, state_key="")
        for i in range(MAX_GROUP_HOPS + 5)
    ]
    persisted = [await services.persister.send_one(d) for d in drafts]
    snapshot = await services.state.get(room_id)
    assert snapshot is not None and snapshot.group_hops < MAX_GROUP_HOPS
    hops = [await services.state_groups.get_group_hops(g) for g in range(1, snapshot.state_group + 1)]
    assert max(h for h in hops if h is not None) == MAX_GROUP_HOPS
    # Every event's state is still exact, across the cut.
    for p in (persisted[0], persisted[len(persisted) // 2], persisted[-1]):
        after = await services.state.state_ids_at_event(p.event.event_id)
        assert after is not None and after[("m.room.topic", "")] == p.event.event_id
        assert (
            after[("m.room.member", alice["user_id"])]
            == snapshot.state[("m.room.member", alice["user_id"])].event_id
        )
    resp = await client.get(
        f"/_matrix/client/v3/rooms/{room_id}/state/m.room.topic", headers=auth(alice["access_token"])
    )
    assert (await resp.json()) == {"topic": f"t{MAX_GROUP_HOPS + 4}"}
