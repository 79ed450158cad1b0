"""The pure part: directory snapshot -> desired state -> plan, on hand-made snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridges.ldap_sync.config import parse_config
from bridges.ldap_sync.directory import Directory, Group, Person, Unit
from bridges.ldap_sync.homeserver import RoomState, UserState
from bridges.ldap_sync.model import build_desired, room_key, space_key
from bridges.ldap_sync.planner import Current, make_plan

from .harness import sync_config_dict

BOT = "@ldapsync:test.local"


def config(tmp_path: Path, **overrides: Any) -> Any:
    raw = sync_config_dict(tmp_path, "http://hs", "ldap://x", tmp_path / "r.yaml", None)
    raw["units"]["base"] = "o=corp"
    raw["groups"]["parent"] = "o=corp"
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


def person(uid: str, unit: str, kind: str = "staff") -> Person:
    dn = f"uid={uid},{unit}"
    return Person(dn, dn, uid, uid.title(), f"{uid}@corp.example", {"employeetype": (kind,)})


UNITS = (
    Unit("o=corp", "o=corp", "u-root", "Corp", None),
    Unit("ou=sales,o=corp", "ou=sales,o=corp", "u-sales", "Sales", "o=corp"),
    Unit("ou=emea,ou=sales,o=corp", "ou=emea,ou=sales,o=corp", "u-emea", "Sales EMEA", "ou=sales,o=corp"),
)
ANN = person("ann", "ou=emea,ou=sales,o=corp", "teacher")
BOB = person("bob", "ou=sales,o=corp")
DIRECTORY = Directory(
    (ANN, BOB),
    UNITS,
    (Group("cn=golf,o=corp", "cn=golf,o=corp", "g-golf", "Golf", ("ann", "nobody"), None),),
    (),
)


def test_subtree_and_direct_membership(tmp_path: Path) -> None:
    by_localpart = config(tmp_path, groups={"member_is_dn": False})
    desired = build_desired(DIRECTORY, by_localpart)
    ann, bob = "@ann:test.local", "@bob:test.local"
    assert desired.rooms[room_key("u-sales")].members == {ann, bob}
    assert desired.rooms[space_key("u-root")].members == {ann, bob}
    assert desired.rooms[room_key("u-emea")].members == {ann}
    assert desired.rooms[room_key("u-emea")].parent == space_key("u-emea")
    assert desired.rooms[space_key("u-emea")].parent == space_key("u-sales")
    assert desired.rooms["group:g-golf"].members == {ann}  # "nobody" is not in the directory
    assert desired.rooms["group:g-golf"].parent == space_key("u-root")
    assert desired.rooms[room_key("u-sales")].levels == {ann: 50}
    # parents come before their children (creation order)
    order = [list(desired.rooms).index(space_key(u)) for u in ("u-root", "u-sales", "u-emea")]
    assert order == sorted(order)

    direct = build_desired(DIRECTORY, config(tmp_path, units={"members": "direct"}))
    assert direct.rooms[room_key("u-sales")].members == {bob}
    assert direct.rooms[room_key("u-root")].members == frozenset()
    assert direct.rooms["group:g-golf"].members == frozenset()  # member values are DNs by default


def test_people_outside_the_directory_and_lower_manual_levels_are_left_alone(tmp_path: Path) -> None:
    cfg = config(tmp_path, groups={"member_is_dn": False})
    desired = build_desired(DIRECTORY, cfg)
    rooms = {key: f"!{i}:test.local" for i, key in enumerate(desired.rooms)}
    states: dict[str, RoomState] = {}
    for key, want in desired.rooms.items():
        rid = rooms[key]
        state = RoomState(rid, key=key, is_space=want.is_space, name=want.name)
        state.members = {BOT: "join", **{m: "join" for m in want.members}}
        state.power_levels = {"users": {BOT: 100, **want.levels}}
        if want.parent:
            state.parents = {rooms[want.parent]}
        states[rid] = state
    for key, want in desired.rooms.items():
        if want.parent:
            states[rooms[want.parent]].children.add(rooms[key])
    users = {
        uid: UserState(True, u.displayname, (("email", u.email or ""),), frozenset({("ldap", u.dn)}))
        for uid, u in desired.users.items()
    }
    sales = states[rooms[room_key("u-sales")]]
    sales.members["@guest:test.local"] = "join"  # invited by hand, not a directory person
    sales.power_levels["users"]["@bob:test.local"] = 25  # a moderator level given by hand
    sales.power_levels["users"]["@guest:test.local"] = 50
    plan = make_plan(desired, Current(users, {}, rooms, states), cfg, BOT)
    assert plan.actions == [], [a.text for a in plan.actions]

    # bob is raised to the rule's level by hand: the sync owns that level and takes it back
    sales.power_levels["users"]["@bob:test.local"] = 50
    plan = make_plan(desired, Current(users, {}, rooms, states), cfg, BOT)
    assert [(a.kind, a.detail) for a in plan.actions] == [("power", {"users": {"@bob:test.local": None}})]

    # a managed account gone from the directory is deactivated, not kicked room by room
    users["@carol:test.local"] = UserState(True, "Carol")
    sales.members["@carol:test.local"] = "join"
    plan = make_plan(desired, Current(users, {"@carol:test.local": "uid=carol"}, rooms, states), cfg, BOT)
    other = [(a.kind, a.target) for a in plan.actions if a.kind != "power"]
    assert other == [("deactivate", "@carol:test.local")]
