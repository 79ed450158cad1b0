"""Reading room history: /messages, /context, /event, /relations, /threads, /timestamp_to_event,
bundled aggregations and history visibility, on both engines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.core.clock import FakeClock
from homeserver.services.timeline import visible_ranges
from homeserver.storage.stores.timeline import MAX_POSITION

from ..conftest import services_of
from .helpers import auth, register

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


# -- helpers -------------------------------------------------------------------------------------------


class User:
    def __init__(self, client: Any, body: dict[str, Any]) -> None:
        self.client = client
        self.user_id: str = body["user_id"]
        self.token: str = body["access_token"]
        self._txn = 0

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)

    async def get(self, path: str, expect: int = 200, **params: Any) -> Any:
        query = {k: (json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in params.items()}
        resp = await self.client.get(path, params=query, headers=self.headers)
        body = await resp.json()
        assert resp.status == expect, (resp.status, body)
        return body

    async def create_room(self, **body: Any) -> str:
        resp = await self.client.post(f"{V3}/createRoom", json=body, headers=self.headers)
        data = await resp.json()
        assert resp.status == 200, data
        return str(data["room_id"])

    async def join(self, room_id: str) -> None:
        resp = await self.client.post(f"{V3}/join/{room_id}", headers=self.headers)
        assert resp.status == 200, await resp.json()

    async def leave(self, room_id: str) -> None:
        resp = await self.client.post(f"{V3}/rooms/{room_id}/leave", headers=self.headers)
        assert resp.status == 200, await resp.json()

    async def send(self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        self._txn += 1
        resp = await self.client.put(
            f"{V3}/rooms/{room_id}/send/{event_type}/t{self._txn}", json=content, headers=self.headers
        )
        data = await resp.json()
        assert resp.status == 200, data
        return str(data["event_id"])

    async def say(self, room_id: str, text: str, **extra: Any) -> str:
        return await self.send(room_id, {"msgtype": "m.text", "body": text, **extra})

    async def state(self, room_id: str, event_type: str, content: dict[str, Any], key: str = "") -> str:
        resp = await self.client.put(
            f"{V3}/rooms/{room_id}/state/{event_type}/{key}", json=content, headers=self.headers
        )
        data = await resp.json()
        assert resp.status == 200, data
        return str(data["event_id"])

    async def redact(self, room_id: str, event_id: str) -> str:
        self._txn += 1
        resp = await self.client.put(
            f"{V3}/rooms/{room_id}/redact/{quote(event_id)}/r{self._txn}", json={}, headers=self.headers
        )
        data = await resp.json()
        assert resp.status == 200, data
        return str(data["event_id"])

    async def messages(self, room_id: str, expect: int = 200, **params: Any) -> Any:
        return await self.get(f"{V3}/rooms/{room_id}/messages", expect, **params)

    async def event(self, room_id: str, event_id: str, expect: int = 200) -> Any:
        return await self.get(f"{V3}/rooms/{room_id}/event/{quote(event_id)}", expect)

    async def context(self, room_id: str, event_id: str, expect: int = 200, **params: Any) -> Any:
        return await self.get(f"{V3}/rooms/{room_id}/context/{quote(event_id)}", expect, **params)

    async def relations(
        self, room_id: str, event_id: str, *tail: str, expect: int = 200, **params: Any
    ) -> Any:
        path = "/".join([f"{V1}/rooms/{room_id}/relations/{quote(event_id)}", *tail])
        return await self.get(path, expect, **params)


async def new_user(client: Any) -> User:
    return User(client, await register(client))


def ids_of(chunk: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in chunk]


def bodies(chunk: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"]


def thread(root: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}


async def paginate(user: User, room_id: str, direction: str, limit: int, **params: Any) -> list[str]:
    """Every event id in one direction, following `end` until it is omitted."""
    seen: list[str] = []
    token: str | None = None
    for _ in range(10_000):
        query: dict[str, Any] = {"dir": direction, "limit": limit, **params}
        if token is not None:
            query["from"] = token
        page = await user.messages(room_id, **query)
        assert len(page["chunk"]) <= limit
        seen.extend(ids_of(page["chunk"]))
        if "end" not in page:
            return seen
        assert page["end"] != token or page["chunk"], "pagination made no progress"
        token = page["end"]
    raise AssertionError("pagination did not terminate")


# -- /messages ------------------------------------------------------------------------------------------


async def test_paginate_1000_messages_both_directions(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    room_id = await alice.create_room(preset="private_chat")
    messages = services_of(client).messages
    sent: list[str] = []
    for start in range(0, 1000, 100):
        sent += await asyncio.gather(
            *(
                messages.send_message(
                    alice.user_id,
                    None,
                    room_id,
                    "m.room.message",
                    {"msgtype": "m.text", "body": str(i)},
                    None,
                )
                for i in range(start, start + 100)
            )
        )

    backwards = await paginate(alice, room_id, "b", 37)
    forwards = await paginate(alice, room_id, "f", 41)
    assert len(backwards) == len(set(backwards)), "duplicates going backwards"
    assert len(forwards) == len(set(forwards)), "duplicates going forwards"
    assert backwards == list(reversed(forwards))
    assert set(sent) <= set(forwards)
    # Messages come back in the order they were sent, after the room's creation events.
    in_order = [e for e in forwards if e in set(sent)]
    assert in_order == sent
    assert forwards[0] != sent[0]  # the m.room.create event comes first
    # Stream order, checked against the store.
    stored = await services_of(client).events.get_events_ordered(forwards)
    orderings = [s.stream_ordering for s in stored]
    assert orderings == sorted(orderings)

    # Tokens compose: forwards from a backwards `end` gives back that page, and the other way round.
    page = await alice.messages(room_id, dir="b", limit=10)
    again = await alice.messages(room_id, dir="f", limit=10, **{"from": page["end"]})
    assert ids_of(again["chunk"]) == list(reversed(ids_of(page["chunk"])))
    older = await alice.messages(room_id, dir="b", limit=10, **{"from": page["end"]})
    assert ids_of(older["chunk"]) == backwards[10:20]
    # `to` bounds the walk.
    bounded = await alice.messages(room_id, dir="b", limit=100, to=page["end"])
    assert ids_of(bounded["chunk"]) == backwards[:10]
    assert "end" not in bounded


async def test_messages_tokens_and_errors(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    outsider = await new_user(client)
    room_id = await alice.create_room(preset="private_chat")
    await alice.say(room_id, "one")

    page = await alice.messages(room_id, dir="b")
    assert page["start"]
    assert bodies(page["chunk"]) == ["one"]
    assert "end" not in page  # the whole room fits: nothing further
    # from is echoed as start
    again = await alice.messages(room_id, dir="b", **{"from": page["start"]})
    assert again["start"] == page["start"]
    # A /sync prev_batch works as a token.
    sync = await alice.get(f"{V3}/sync")
    prev_batch = sync["rooms"]["join"][room_id]["timeline"]["prev_batch"]
    await alice.messages(room_id, dir="b", **{"from": prev_batch})
    await alice.messages(room_id, dir="f", **{"from": sync["next_batch"]})

    bad = await alice.messages(room_id, 400, dir="b", **{"from": "garbage"})
    assert bad["errcode"] == "M_INVALID_PARAM"
    bad = await alice.messages(room_id, 400, dir="x")
    assert bad["errcode"] == "M_INVALID_PARAM"
    bad = await alice.messages(room_id, 400, dir="b", limit="many")
    assert bad["errcode"] == "M_INVALID_PARAM"
    bad = await alice.messages(room_id, 400, dir="b", filter="{not json")
    assert bad["errcode"] == "M_NOT_JSON"
    bad = await alice.messages(room_id, 400, dir="b", filter={"types": "m.room.message"})
    assert bad["errcode"] == "M_INVALID_PARAM"
    forbidden = await outsider.messages(room_id, 403, dir="b")
    assert forbidden["errcode"] == "M_FORBIDDEN"
    # limit is capped, not refused
    capped = await alice.messages(room_id, dir="b", limit=5000)
    assert len(capped["chunk"]) < 1000


async def test_messages_filters(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    bob = await new_user(client)
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await alice.say(room_id, "a1")
    await bob.say(room_id, "b1")
    await alice.send(room_id, {"msgtype": "m.image", "body": "pic", "url": "mxc://test.local/abc"})
    await alice.send(room_id, {"key": "value"}, event_type="org.example.custom")
    await bob.say(room_id, "b2")

    page = await alice.messages(room_id, dir="b", filter={"types": ["m.room.message"]})
    assert bodies(page["chunk"]) == ["b2", "pic", "b1", "a1"]
    assert {e["type"] for e in page["chunk"]} == {"m.room.message"}

    page = await alice.messages(
        room_id, dir="b", filter={"types": ["m.room.*"], "not_types": ["m.room.member"]}
    )
    types = {e["type"] for e in page["chunk"]}
    assert "m.room.message" in types and "m.room.create" in types
    assert "m.room.member" not in types and "org.example.custom" not in types

    page = await alice.messages(
        room_id, dir="f", filter={"senders": [bob.user_id], "types": ["m.room.message"]}
    )
    assert bodies(page["chunk"]) == ["b1", "b2"]

    page = await alice.messages(room_id, dir="b", filter={"not_senders": [alice.user_id]})
    assert {e["sender"] for e in page["chunk"]} == {bob.user_id}

    page = await alice.messages(room_id, dir="b", filter={"contains_url": True})
    assert bodies(page["chunk"]) == ["pic"]
    page = await alice.messages(room_id, dir="b", filter={"contains_url": False, "types": ["m.room.message"]})
    assert bodies(page["chunk"]) == ["b2", "b1", "a1"]

    # Filtered pages still paginate without gaps.
    collected = await paginate(alice, room_id, "b", 1, filter=json.dumps({"types": ["m.room.message"]}))
    assert len(collected) == 4

    # Lazy-loading: `state` carries the member events of the chunk's senders only.
    page = await alice.messages(
        room_id, dir="b", limit=1, filter={"lazy_load_members": True, "types": ["m.room.message"]}
    )
    assert bodies(page["chunk"]) == ["b2"]
    members = [(e["type"], e["state_key"]) for e in page["state"]]
    assert members == [("m.room.member", bob.user_id)]
    page = await alice.messages(
        room_id, dir="b", filter={"lazy_load_members": True, "types": ["m.room.message"]}
    )
    assert sorted(e["state_key"] for e in page["state"]) == sorted([alice.user_id, bob.user_id])
    assert "state" not in await alice.messages(room_id, dir="b")

    # A stored filter id: its room.timeline filter applies.
    resp = await client.post(
        f"{V3}/user/{alice.user_id}/filter",
        json={"room": {"timeline": {"senders": [bob.user_id], "types": ["m.room.message"]}}},
        headers=alice.headers,
    )
    filter_id = (await resp.json())["filter_id"]
    page = await alice.messages(room_id, dir="b", filter=filter_id)
    assert bodies(page["chunk"]) == ["b2", "b1"]


async def test_redacted_events_are_served_pruned(client: Any) -> None:
    alice = await new_user(client)
    room_id = await alice.create_room(preset="private_chat")
    target = await alice.say(room_id, "secret")
    redaction = await alice.redact(room_id, target)
    page = await alice.messages(room_id, dir="b", limit=2)
    assert ids_of(page["chunk"]) == [redaction, target]
    pruned = page["chunk"][1]
    assert pruned["content"] == {}
    assert pruned["unsigned"]["redacted_because"]["event_id"] == redaction
    assert (await alice.event(room_id, target))["content"] == {}


# -- history visibility -----------------------------------------------------------------------------


async def test_joined_visibility_hides_history_before_join(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    bob = await new_user(client)
    room_id = await alice.create_room(
        preset="public_chat",
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "joined"},
            }
        ],
    )
    before = [await alice.say(room_id, f"before {i}") for i in range(30)]
    await bob.join(room_id)
    after = await alice.say(room_id, "after")

    seen = await paginate(bob, room_id, "b", 7)
    page = await bob.messages(room_id, dir="b", limit=100)
    assert bodies(page["chunk"]) == ["after"]
    assert not set(before) & set(seen)
    assert after in seen
    assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id for e in page["chunk"])
    assert seen == list(reversed(await paginate(bob, room_id, "f", 7)))

    # Alice, joined since the start, sees everything.
    assert set(before) <= set(await paginate(alice, room_id, "b", 50))

    err = await bob.event(room_id, before[0], expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    await bob.context(room_id, before[0], expect=404)
    ctx = await bob.context(room_id, after, limit=10)
    assert not set(before) & set(ids_of(ctx["events_before"]))
    assert (await bob.event(room_id, after))["event_id"] == after


async def test_left_user_sees_up_to_their_leave(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    bob = await new_user(client)
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    while_joined = await alice.say(room_id, "while joined")
    await bob.leave(room_id)
    after_leave = await alice.say(room_id, "after leave")

    page = await bob.messages(room_id, dir="b")
    assert page["chunk"][0]["type"] == "m.room.member"
    assert page["chunk"][0]["content"]["membership"] == "leave"
    assert bodies(page["chunk"]) == ["while joined"]
    forwards = await paginate(bob, room_id, "f", 3)
    assert while_joined in forwards and after_leave not in forwards
    assert forwards[-1] == page["chunk"][0]["event_id"]
    # A token from after the leave is clamped to the leave.
    alice_page = await alice.messages(room_id, dir="b", limit=1)
    clamped = await bob.messages(room_id, dir="b", limit=1, **{"from": alice_page["start"]})
    assert ids_of(clamped["chunk"]) == [page["chunk"][0]["event_id"]]

    assert (await bob.event(room_id, while_joined))["event_id"] == while_joined
    await bob.event(room_id, after_leave, expect=404)
    ctx = await bob.context(room_id, while_joined)
    assert after_leave not in ids_of(ctx["events_after"])
    ts = (await alice.event(room_id, after_leave))["origin_server_ts"]
    found = await bob.get(f"{V1}/rooms/{room_id}/timestamp_to_event", ts=ts + 10_000, dir="b")
    assert found["event_id"] != after_leave


async def test_world_readable_room_is_readable_by_anyone(client: Any) -> None:
    alice = await new_user(client)
    carol = await new_user(client)
    room_id = await alice.create_room(
        preset="public_chat",
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "world_readable"},
            }
        ],
    )
    hello = await alice.say(room_id, "hello")
    assert bodies((await carol.messages(room_id, dir="b"))["chunk"]) == ["hello"]
    assert (await carol.event(room_id, hello))["event_id"] == hello
    assert (await carol.context(room_id, hello))["event"]["event_id"] == hello


async def test_non_members(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    outsider = await new_user(client)
    room_id = await alice.create_room(preset="private_chat")
    hello = await alice.say(room_id, "hello")
    for path, params in (
        (f"{V3}/rooms/{room_id}/messages", {"dir": "b"}),
        (f"{V3}/rooms/{room_id}/context/{quote(hello)}", {}),
        (f"{V1}/rooms/{room_id}/threads", {}),
        (f"{V1}/rooms/{room_id}/timestamp_to_event", {"ts": 0, "dir": "f"}),
    ):
        err = await outsider.get(path, 403, **params)
        assert err["errcode"] == "M_FORBIDDEN", path
    # These two answer 404 when the user may not read the event (event not found or not visible).
    assert (await outsider.event(room_id, hello, expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await outsider.relations(room_id, hello, expect=404))["errcode"] == "M_NOT_FOUND"


# -- /event and /context --------------------------------------------------------------------------------


async def test_get_event(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    room_id = await alice.create_room(preset="private_chat")
    other_room = await alice.create_room(preset="private_chat")
    hello = await alice.say(room_id, "hello")
    event = await alice.event(room_id, hello)
    assert event["event_id"] == hello
    assert event["room_id"] == room_id
    assert event["content"]["body"] == "hello"
    assert event["sender"] == alice.user_id
    assert "transaction_id" in event["unsigned"]
    assert (await alice.event(room_id, "$unknown", expect=404))["errcode"] == "M_NOT_FOUND"
    assert (await alice.event(other_room, hello, expect=404))["errcode"] == "M_NOT_FOUND"


async def test_context(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    bob = await new_user(client)
    room_id = await alice.create_room(preset="public_chat", name="Ctx")
    await bob.join(room_id)
    ids = []
    for i in range(10):
        user = alice if i % 2 else bob
        ids.append(await user.say(room_id, f"m{i}"))

    ctx = await alice.context(room_id, ids[5], limit=4)
    assert ctx["event"]["event_id"] == ids[5]
    assert ids_of(ctx["events_before"]) == [ids[4], ids[3]]
    assert ids_of(ctx["events_after"]) == [ids[6], ids[7]]
    state_types = {(e["type"], e["state_key"]) for e in ctx["state"]}
    assert ("m.room.create", "") in state_types and ("m.room.name", "") in state_types
    assert ("m.room.member", alice.user_id) in state_types and ("m.room.member", bob.user_id) in state_types

    # The tokens continue with /messages.
    older = await alice.messages(room_id, dir="b", limit=2, **{"from": ctx["start"]})
    assert ids_of(older["chunk"]) == [ids[2], ids[1]]
    newer = await alice.messages(room_id, dir="f", limit=2, **{"from": ctx["end"]})
    assert ids_of(newer["chunk"]) == [ids[8], ids[9]]

    # limit 0: the event alone; the default limit splits 5/5.
    ctx0 = await alice.context(room_id, ids[5], limit=0)
    assert ctx0["events_before"] == [] and ctx0["events_after"] == []
    assert ctx0["event"]["event_id"] == ids[5]
    default = await alice.context(room_id, ids[5])
    assert len(default["events_before"]) == 5 and ids_of(default["events_after"]) == ids[6:10]

    # The filter applies to before/after/state, not to the event itself.
    ctx = await alice.context(
        room_id, ids[4], limit=4, filter={"senders": [alice.user_id], "lazy_load_members": True}
    )
    assert ctx["event"]["sender"] == bob.user_id
    assert {e["sender"] for e in ctx["events_before"] + ctx["events_after"]} == {alice.user_id}
    assert ids_of(ctx["events_before"]) == [ids[3], ids[1]]
    assert {e["sender"] for e in ctx["state"]} <= {alice.user_id}
    ctx = await alice.context(room_id, ids[5], limit=2, filter={"lazy_load_members": True})
    assert ids_of(ctx["events_before"]) == [ids[4]] and ids_of(ctx["events_after"]) == [ids[6]]
    members = {e["state_key"] for e in ctx["state"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}
    assert any(e["type"] == "m.room.create" for e in ctx["state"])

    assert (await alice.context(room_id, "$nope", expect=404))["errcode"] == "M_NOT_FOUND"


# -- relations and bundled aggregations -------------------------------------------------------------


async def test_relations_and_aggregations(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    bob = await new_user(client)
    carol = await new_user(client)
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await carol.join(room_id)
    root = await alice.say(room_id, "root")

    def edit(text: str) -> dict[str, Any]:
        return {
            "msgtype": "m.text",
            "body": f"* {text}",
            "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": root},
        }

    edit1 = await alice.send(room_id, edit("root v2"))
    edit2 = await alice.send(room_id, edit("root v3"))
    not_an_edit = await bob.send(room_id, edit("hijack"))  # another sender: invalid, not bundled
    reaction = await bob.send(
        room_id, {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}, "m.reaction"
    )
    t1 = await bob.say(room_id, "t1", **thread(root))
    t2 = await alice.say(room_id, "t2", **thread(root))
    t3 = await bob.say(room_id, "t3", **thread(root))
    reference = await carol.send(
        room_id,
        {"msgtype": "m.text", "body": "ref", "m.relates_to": {"rel_type": "m.reference", "event_id": root}},
    )
    # An edit of a thread reply: a grandchild of the root.
    t3_edit = await bob.send(
        room_id,
        {
            "msgtype": "m.text",
            "body": "* t3!",
            "m.new_content": {"msgtype": "m.text", "body": "t3!"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": t3},
        },
    )
    redacted_reply = await bob.say(room_id, "oops", **thread(root))
    await bob.redact(room_id, redacted_reply)

    # All children, newest first; a redacted child no longer relates.
    everything = await alice.relations(room_id, root, limit=50)
    assert ids_of(everything["chunk"]) == [reference, t3, t2, t1, reaction, not_an_edit, edit2, edit1]
    assert "next_batch" not in everything and "prev_batch" not in everything
    assert "recursion_depth" not in everything

    # Per rel type (and event type).
    assert ids_of((await alice.relations(room_id, root, "m.replace"))["chunk"]) == [not_an_edit, edit2, edit1]
    assert ids_of((await alice.relations(room_id, root, "m.annotation"))["chunk"]) == [reaction]
    assert ids_of((await alice.relations(room_id, root, "m.annotation", "m.reaction"))["chunk"]) == [reaction]
    assert (await alice.relations(room_id, root, "m.annotation", "m.room.message"))["chunk"] == []
    assert ids_of((await alice.relations(room_id, root, "m.reference"))["chunk"]) == [reference]
    assert ids_of((await alice.relations(room_id, root, "m.thread", "m.room.message"))["chunk"]) == [
        t3,
        t2,
        t1,
    ]

    # Pagination: backwards by default, then forwards.
    first = await alice.relations(room_id, root, "m.thread", limit=2)
    assert ids_of(first["chunk"]) == [t3, t2]
    second = await alice.relations(room_id, root, "m.thread", limit=2, **{"from": first["next_batch"]})
    assert ids_of(second["chunk"]) == [t1]
    assert second["prev_batch"] == first["next_batch"]
    assert "next_batch" not in second
    forwards = await alice.relations(room_id, root, "m.thread", dir="f", limit=2)
    assert ids_of(forwards["chunk"]) == [t1, t2]
    rest = await alice.relations(room_id, root, "m.thread", dir="f", **{"from": forwards["next_batch"]})
    assert ids_of(rest["chunk"]) == [t3]
    bad = await alice.relations(room_id, root, expect=400, **{"from": "nope"})
    assert bad["errcode"] == "M_INVALID_PARAM"

    # Recursion reaches the edit of a thread reply and reports its depth.
    recursive = await alice.relations(room_id, root, "m.replace", recurse="true")
    assert ids_of(recursive["chunk"]) == [t3_edit, not_an_edit, edit2, edit1]
    assert recursive["recursion_depth"] == 3
    flat = await alice.relations(room_id, root, "m.replace", recurse="false")
    assert t3_edit not in ids_of(flat["chunk"])
    assert flat["recursion_depth"] == 1

    assert (await alice.relations(room_id, "$missing", expect=404))["errcode"] == "M_NOT_FOUND"

    # Bundled aggregations on /event, /messages and /context.
    for viewer, participated in ((alice, True), (bob, True), (carol, False)):
        served = await viewer.event(room_id, root)
        relations = served["unsigned"]["m.relations"]
        assert set(relations) == {"m.replace", "m.thread", "m.reference"}  # never m.annotation
        assert relations["m.replace"]["event_id"] == edit2
        assert relations["m.replace"]["content"]["m.new_content"]["body"] == "root v3"
        assert served["content"]["body"] == "root"  # the original content stays
        summary = relations["m.thread"]
        assert summary["count"] == 3
        assert summary["current_user_participated"] is participated
        latest = summary["latest_event"]
        assert latest["event_id"] == t3
        assert latest["room_id"] == room_id
        assert latest["unsigned"]["m.relations"]["m.replace"]["event_id"] == t3_edit
        assert relations["m.reference"] == {"chunk": [{"event_id": reference}]}

    page = await alice.messages(room_id, dir="b", limit=100)
    by_id = {e["event_id"]: e for e in page["chunk"]}
    assert by_id[root]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit2
    assert by_id[t3]["unsigned"]["m.relations"]["m.replace"]["event_id"] == t3_edit
    assert "m.relations" not in by_id[t1].get("unsigned", {})
    assert all("m.relations" not in e.get("unsigned", {}) for e in page["chunk"] if "state_key" in e)
    ctx = await alice.context(room_id, root, limit=2)
    assert ctx["event"]["unsigned"]["m.relations"]["m.thread"]["count"] == 3

    # Redacting the original drops the edit from its bundle; redacting the latest edit reverts.
    await alice.redact(room_id, edit2)
    assert (await alice.event(room_id, root))["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit1
    await alice.redact(room_id, root)
    served = await alice.event(room_id, root)
    assert "m.replace" not in served["unsigned"].get("m.relations", {})
    assert served["content"] == {}


async def test_threads_list(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await new_user(client)
    bob = await new_user(client)
    outsider = await new_user(client)
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    root_a = await alice.say(room_id, "A")
    root_b = await bob.say(room_id, "B")
    root_c = await bob.say(room_id, "C")
    await bob.say(room_id, "no thread")
    await bob.say(room_id, "a1", **thread(root_a))
    await bob.say(room_id, "c1", **thread(root_c))
    await bob.say(room_id, "b1", **thread(root_b))
    await alice.say(room_id, "c2", **thread(root_c))

    listing = await alice.get(f"{V1}/rooms/{room_id}/threads")
    # Most recent thread activity first.
    assert ids_of(listing["chunk"]) == [root_c, root_b, root_a]
    assert "next_batch" not in listing
    summary = listing["chunk"][0]["unsigned"]["m.relations"]["m.thread"]
    assert summary["count"] == 2 and summary["latest_event"]["content"]["body"] == "c2"
    assert summary["current_user_participated"] is True

    participated = await alice.get(f"{V1}/rooms/{room_id}/threads", include="participated")
    assert ids_of(participated["chunk"]) == [root_c, root_a]  # replied to C, started A
    bobs = await bob.get(f"{V1}/rooms/{room_id}/threads", include="participated")
    assert ids_of(bobs["chunk"]) == [root_c, root_b, root_a]

    pages: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if token:
            params["from"] = token
        page = await alice.get(f"{V1}/rooms/{room_id}/threads", **params)
        pages += ids_of(page["chunk"])
        token = page.get("next_batch")
        if token is None:
            break
    assert pages == [root_c, root_b, root_a]

    assert (await alice.get(f"{V1}/rooms/{room_id}/threads", 400, limit=0))["errcode"] == "M_INVALID_PARAM"
    assert (await alice.get(f"{V1}/rooms/{room_id}/threads", 400, include="x"))[
        "errcode"
    ] == "M_INVALID_PARAM"
    assert (await alice.get(f"{V1}/rooms/{room_id}/threads", 400, **{"from": "?"}))[
        "errcode"
    ] == "M_INVALID_PARAM"
    assert (await outsider.get(f"{V1}/rooms/{room_id}/threads", 403))["errcode"] == "M_FORBIDDEN"


# -- /timestamp_to_event ----------------------------------------------------------------------------


@pytest.fixture
async def clocked(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]
) -> tuple[Any, FakeClock]:
    clock = FakeClock()
    return await aiohttp_client(create_app_from_config(engine_config(), clock=clock)), clock


async def test_timestamp_to_event(clocked: tuple[Any, FakeClock]) -> None:
    client, clock = clocked
    alice = await new_user(client)
    room_id = await alice.create_room(preset="private_chat")
    sent = []
    for i in range(3):
        clock.advance(1000)
        sent.append((await alice.say(room_id, f"m{i}"), clock.time_ms()))
    path = f"{V1}/rooms/{room_id}/timestamp_to_event"

    (e0, _), (e1, t1), (e2, t2) = sent
    assert await alice.get(path, ts=t1, dir="f") == {"event_id": e1, "origin_server_ts": t1}
    assert await alice.get(path, ts=t1, dir="b") == {"event_id": e1, "origin_server_ts": t1}
    assert (await alice.get(path, ts=t1 + 1, dir="f"))["event_id"] == e2
    assert (await alice.get(path, ts=t1 - 1, dir="b"))["event_id"] == e0
    assert (await alice.get(path, ts=t2 + 10**6, dir="b"))["event_id"] == e2
    first = await alice.get(path, ts=0, dir="f")
    assert (await alice.event(room_id, first["event_id"]))["type"] == "m.room.create"

    assert (await alice.get(path, 404, ts=t2 + 1, dir="f"))["errcode"] == "M_NOT_FOUND"
    assert (await alice.get(path, 404, ts=0, dir="b"))["errcode"] == "M_NOT_FOUND"
    assert (await alice.get(path, 400, dir="f"))["errcode"] == "M_MISSING_PARAM"
    assert (await alice.get(path, 400, ts=t1))["errcode"] == "M_MISSING_PARAM"
    assert (await alice.get(path, 400, ts="soon", dir="f"))["errcode"] == "M_INVALID_PARAM"
    assert (await alice.get(path, 400, ts=t1, dir="sideways"))["errcode"] == "M_INVALID_PARAM"


# -- visible_ranges (pure) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hv", "members", "expected"),
    [
        # joined: only while joined, plus the user's own membership events
        # (events before the first history_visibility event read as shared)
        ([(5, "joined")], [(10, "join")], [(0, 5), (9, MAX_POSITION)]),
        ([(5, "joined")], [(10, "join"), (20, "leave")], [(0, 5), (9, 20)]),
        # shared: everything before the last join, and while joined
        ([(5, "shared")], [(10, "join"), (20, "leave")], [(0, 20)]),
        # no history visibility event at all reads as shared
        ([], [(10, "join")], [(0, MAX_POSITION)]),
        # world_readable: all of it
        ([(5, "world_readable")], [], [(5, MAX_POSITION)]),
        # invited: while invited and joined
        ([(5, "invited")], [(10, "invite"), (15, "join")], [(0, 5), (9, MAX_POSITION)]),
        # never a member of a joined room: nothing
        ([(5, "joined")], [], []),
        # a visibility change mid-way: joined before 30, world_readable after
        (
            [(5, "joined"), (30, "world_readable")],
            [(10, "join"), (20, "leave")],
            [(0, 5), (9, 20), (30, MAX_POSITION)],
        ),
    ],
)
def test_visible_ranges(
    hv: list[tuple[int, str]], members: list[tuple[int, str]], expected: list[tuple[int, int]]
) -> None:
    assert visible_ranges(hv, members) == expected
