"""Space hierarchy, black-box: GET /_matrix/client/v1/rooms/{roomId}/hierarchy.

A space (``m.space`` room type) lists its children with ``m.space.child`` state events. Covered:
depth-first order with the children ordered by their ``order`` key, ``children_state``, what a
non-member may see (restricted, knockable, world-readable, invited), ``max_depth``, ``limit`` +
``next_batch``, ``suggested_only``, the 400s for bad parameters and tokens, and 403 for a space the
user can neither view nor join. Every response is checked against space_hierarchy.yaml.

Synapse rate-limits this endpoint per user (a burst of about ten requests), so no test sends more
than eight hierarchy requests as one user.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from .client import q
from .harness import Homeserver, User, assert_api_error, create_room, invite_user, join_room, put_state
from .spec_schema import assert_response_matches_spec

V1 = "/_matrix/client/v1"
HIERARCHY = "/rooms/{roomId}/hierarchy"


def hierarchy_path(room_id: str) -> str:
    return f"{V1}/rooms/{q(room_id)}/hierarchy"


def get_hierarchy(user: User, room_id: str, **params: Any) -> dict[str, Any]:
    resp = user.client.get(hierarchy_path(room_id), params=params or None)
    body: dict[str, Any] = assert_response_matches_spec(resp, "space_hierarchy.yaml", HIERARCHY)
    return body


def room_ids(body: dict[str, Any]) -> list[str]:
    return [room["room_id"] for room in body["rooms"]]


def create_space(user: User, **body: Any) -> str:
    creation = {**body.pop("creation_content", {}), "type": "m.space"}
    return create_room(user, creation_content=creation, **body)


def add_child(user: User, space_id: str, child_id: str, **content: Any) -> None:
    put_state(user, space_id, "m.space.child", {"via": [user.server_name], **content}, child_id)


@dataclass
class Tree:
    """space ─┬─ b (suggested, order "a")
    ├─ a (order "b")
    ├─ sub (a space, order "c") ── c
    └─ private (invite-only, order "d"; only its creator can see it)"""

    owner: User
    space: str
    a: str
    b: str
    sub: str
    c: str
    private: str

    @property
    def public_order(self) -> list[str]:
        """Depth-first, children in ``order`` order: what a non-member gets."""
        return [self.space, self.b, self.a, self.sub, self.c]


def build_tree(hs: Homeserver) -> Tree:
    owner = hs.register()
    space = create_space(owner, preset="public_chat", name="Compat space", topic="a space for tests")
    a = create_room(owner, preset="public_chat", name="Room A")
    b = create_room(owner, preset="public_chat", name="Room B", topic="the suggested one")
    sub = create_space(owner, preset="public_chat", name="Sub-space")
    c = create_room(owner, preset="public_chat", name="Room C")
    private = create_room(owner, preset="private_chat", name="Private room")
    # Children added out of order: the "order" keys, not the event order, decide.
    add_child(owner, space, a, order="b")
    add_child(owner, space, sub, order="c")
    add_child(owner, space, private, order="d")
    add_child(owner, space, b, order="a", suggested=True)
    add_child(owner, sub, c)
    return Tree(owner, space, a, b, sub, c, private)


def test_hierarchy_of_a_space(hs: Homeserver) -> None:
    tree = build_tree(hs)
    visitor = hs.register()
    body = get_hierarchy(visitor, tree.space)
    assert room_ids(body) == tree.public_order
    assert "next_batch" not in body
    rooms = {room["room_id"]: room for room in body["rooms"]}

    space = rooms[tree.space]
    assert space["room_type"] == "m.space"
    assert (space["name"], space["topic"], space["join_rule"]) == (
        "Compat space",
        "a space for tests",
        "public",
    )
    assert space["num_joined_members"] == 1
    assert space["world_readable"] is False
    assert space["guest_can_join"] is False
    # children_state holds every m.space.child event of the space, the private child's included.
    children = {event["state_key"]: event for event in space["children_state"]}
    assert set(children) == {tree.a, tree.b, tree.sub, tree.private}
    for event in children.values():
        assert event["type"] == "m.space.child"
        assert event["sender"] == tree.owner.user_id
        assert event["content"]["via"] == [tree.owner.server_name], event
        assert isinstance(event["origin_server_ts"], int)
    assert children[tree.b]["content"]["suggested"] is True
    assert children[tree.b]["content"]["order"] == "a"

    assert "room_type" not in rooms[tree.a]
    assert rooms[tree.a]["children_state"] == []
    assert rooms[tree.a]["name"] == "Room A"
    assert rooms[tree.b]["topic"] == "the suggested one"
    assert rooms[tree.sub]["room_type"] == "m.space"
    assert [event["state_key"] for event in rooms[tree.sub]["children_state"]] == [tree.c]
    assert rooms[tree.c]["children_state"] == []

    # The owner, a member of the private room, sees it too.
    assert room_ids(get_hierarchy(tree.owner, tree.space)) == [*tree.public_order, tree.private]


def test_max_depth(hs: Homeserver) -> None:
    tree = build_tree(hs)
    visitor = hs.register()
    assert room_ids(get_hierarchy(visitor, tree.space, max_depth=0)) == [tree.space]
    assert room_ids(get_hierarchy(visitor, tree.space, max_depth=1)) == [tree.space, tree.b, tree.a, tree.sub]
    assert room_ids(get_hierarchy(visitor, tree.space, max_depth=2)) == tree.public_order
    # The sub-space as the root.
    assert room_ids(get_hierarchy(visitor, tree.sub)) == [tree.sub, tree.c]


def test_suggested_only(hs: Homeserver) -> None:
    tree = build_tree(hs)
    visitor = hs.register()
    assert room_ids(get_hierarchy(visitor, tree.space, suggested_only="true")) == [tree.space, tree.b]
    assert room_ids(get_hierarchy(visitor, tree.space, suggested_only="false")) == tree.public_order


def test_limit_and_next_batch(hs: Homeserver) -> None:
    tree = build_tree(hs)
    visitor = hs.register()
    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": 1}
    for _ in range(7):
        body = get_hierarchy(visitor, tree.space, **params)
        assert len(body["rooms"]) <= 1
        pages.append(room_ids(body))
        if "next_batch" not in body:
            break
        params["from"] = body["next_batch"]
    else:
        raise AssertionError(f"hierarchy pagination did not end: {pages}")
    assert [room for page in pages for room in page] == tree.public_order

    other = hs.register()
    first = get_hierarchy(other, tree.space, limit=3)
    assert room_ids(first) == tree.public_order[:3]
    second = get_hierarchy(other, tree.space, limit=3, **{"from": first["next_batch"]})
    assert room_ids(second) == tree.public_order[3:]
    assert (
        "next_batch" not in second
        or room_ids(get_hierarchy(other, tree.space, **{"from": second["next_batch"]})) == []
    )


def test_pagination_errors(hs: Homeserver) -> None:
    tree = build_tree(hs)
    visitor = hs.register()
    token = get_hierarchy(visitor, tree.space, limit=1)["next_batch"]
    # "If specified, max_depth and suggested_only cannot be changed from the first request."
    for changed in ({"max_depth": 1}, {"suggested_only": "true"}):
        resp = visitor.client.get(hierarchy_path(tree.space), params={"limit": 1, "from": token, **changed})
        assert_api_error(resp, "space_hierarchy.yaml", HIERARCHY, 400, "M_INVALID_PARAM")
    resp = visitor.client.get(hierarchy_path(tree.space), params={"from": "compat-unknown-token"})
    assert_api_error(resp, "space_hierarchy.yaml", HIERARCHY, 400, "M_INVALID_PARAM")
    # limit "Must be an integer greater than zero", max_depth "a non-negative integer".
    # Synapse accepts limit=0 (200, no rooms and a next_batch); it rejects negative values.
    bad: list[dict[str, Any]] = [{"limit": -3}, {"max_depth": -1}]
    if not hs.is_synapse:
        bad.append({"limit": 0})
    for params in bad:
        resp = visitor.client.get(hierarchy_path(tree.space), params=params)
        assert_api_error(resp, "space_hierarchy.yaml", HIERARCHY, 400, "M_INVALID_PARAM")
    # The token still works with the original parameters.
    assert room_ids(get_hierarchy(visitor, tree.space, limit=1, **{"from": token})) == [tree.b]


def test_private_space_is_forbidden(hs: Homeserver) -> None:
    owner, visitor = hs.register(), hs.register()
    child = create_room(owner, preset="public_chat")
    space = create_space(owner, preset="private_chat", name="Secret space")
    add_child(owner, space, child)
    # Invite-only and not world-readable: the visitor can neither view nor join it.
    resp = visitor.client.get(hierarchy_path(space))
    assert_api_error(resp, "space_hierarchy.yaml", HIERARCHY, 403, "M_FORBIDDEN")
    assert room_ids(get_hierarchy(owner, space)) == [space, child]
    # Once invited the visitor has permission to join, so may look.
    invite_user(owner, space, visitor.user_id)
    assert room_ids(get_hierarchy(visitor, space)) == [space, child]


def test_world_readable_space_is_visible(hs: Homeserver) -> None:
    owner, visitor = hs.register(), hs.register()
    child = create_room(owner, preset="public_chat")
    space = create_space(
        owner,
        preset="private_chat",
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "world_readable"},
            }
        ],
    )
    add_child(owner, space, child)
    body = get_hierarchy(visitor, space)
    assert room_ids(body) == [space, child]
    assert body["rooms"][0]["world_readable"] is True
    assert body["rooms"][0]["join_rule"] == "invite"


def test_unknown_room_is_forbidden(hs: Homeserver, user: User) -> None:
    # "The room does not exist" is one of the spec's reasons for the 403.
    resp = user.client.get(hierarchy_path(f"!compatnosuchroom:{user.server_name}"))
    assert_api_error(resp, "space_hierarchy.yaml", HIERARCHY, 403, "M_FORBIDDEN")


def test_removed_child_and_plain_room(hs: Homeserver) -> None:
    owner, visitor = hs.register(), hs.register()
    space = create_space(owner, preset="public_chat")
    kept, removed = create_room(owner, preset="public_chat"), create_room(owner, preset="public_chat")
    add_child(owner, space, kept)
    add_child(owner, space, removed)
    assert set(room_ids(get_hierarchy(visitor, space))) == {space, kept, removed}
    # "Child rooms can be removed from a space by omitting the via key of content."
    put_state(owner, space, "m.space.child", {}, removed)
    body = get_hierarchy(visitor, space)
    assert room_ids(body) == [space, kept]
    assert [event["state_key"] for event in body["rooms"][0]["children_state"]] == [kept]
    # A room that is not a space is its own one-room hierarchy.
    body = get_hierarchy(visitor, kept)
    assert room_ids(body) == [kept]
    assert body["rooms"][0]["children_state"] == []


def test_restricted_and_knockable_children(hs: Homeserver) -> None:
    owner, member, outsider = hs.register(), hs.register(), hs.register()
    space = create_space(owner, preset="public_chat")
    join_room(member, space)
    restricted = create_room(
        owner,
        preset="private_chat",
        name="Members of the space only",
        initial_state=[
            {
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}],
                },
            }
        ],
    )
    knockable = create_room(
        owner,
        preset="private_chat",
        initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
    )
    alias = f"compat_h_{secrets.token_hex(4)}"
    detailed = create_room(
        owner,
        preset="public_chat",
        room_alias_name=alias,
        initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {"type": "m.room.avatar", "state_key": "", "content": {"url": "mxc://example.org/compatavatar"}},
        ],
    )
    for child in (restricted, knockable, detailed):
        add_child(owner, space, child)

    # A restricted room is listed to those who meet its conditions; a knockable one to everyone.
    rooms = {room["room_id"]: room for room in get_hierarchy(member, space)["rooms"]}
    assert set(rooms) == {space, restricted, knockable, detailed}
    assert rooms[restricted]["join_rule"] == "restricted"
    assert rooms[restricted]["allowed_room_ids"] == [space]
    assert rooms[knockable]["join_rule"] == "knock"
    assert rooms[detailed]["canonical_alias"] == f"#{alias}:{owner.server_name}"
    assert rooms[detailed]["avatar_url"] == "mxc://example.org/compatavatar"
    assert rooms[detailed]["encryption"] == "m.megolm.v1.aes-sha2"
    for room in rooms.values():
        assert isinstance(room["room_version"], str)
    assert set(room_ids(get_hierarchy(outsider, space))) == {space, knockable, detailed}
