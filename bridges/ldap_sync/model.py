"""What the homeserver should look like for a directory snapshot: accounts, and rooms keyed by
stable names ("unit:<id>:space", "unit:<id>:room", "group:<id>") with their members and levels."""

from __future__ import annotations

from dataclasses import dataclass

from .config import SyncConfig
from .directory import Directory, Person, normalize_dn, parent_dn


@dataclass(frozen=True)
class DesiredUser:
    user_id: str
    dn: str
    displayname: str
    email: str | None


@dataclass(frozen=True)
class DesiredRoom:
    key: str
    is_space: bool
    name: str
    parent: str | None  # key of the space it is a child of
    members: frozenset[str]
    levels: dict[str, int]  # directory members with a configured power level


@dataclass(frozen=True)
class Desired:
    users: dict[str, DesiredUser]
    rooms: dict[str, DesiredRoom]  # in creation order: every parent before its children


def space_key(uid: str) -> str:
    return f"unit:{uid}:space"


def room_key(uid: str) -> str:
    return f"unit:{uid}:room"


def group_key(uid: str) -> str:
    return f"group:{uid}"


def user_id(localpart: str, server_name: str) -> str:
    return f"@{localpart}:{server_name}"


def level_for(person: Person, config: SyncConfig) -> int | None:
    """The highest level of the power-level rules the person matches (values compared ignoring case)."""
    best: int | None = None
    for rule in config.power_levels:
        values = {v.lower() for v in person.attributes.get(rule.attribute.lower(), ())}
        if values & {v.lower() for v in rule.values} and (best is None or rule.level > best):
            best = rule.level
    return best


def build_desired(directory: Directory, config: SyncConfig) -> Desired:
    server = config.homeserver.server_name
    users = {
        user_id(p.localpart, server): DesiredUser(user_id(p.localpart, server), p.dn, p.displayname, p.email)
        for p in directory.people
    }
    by_dn = {p.ndn: p for p in directory.people}
    by_localpart = {p.localpart: p for p in directory.people}
    units = {u.ndn: u for u in directory.units}

    def unit_of(ndn: str) -> str | None:
        up = parent_dn(ndn)
        while up is not None:
            if up in units:
                return up
            up = parent_dn(up)
        return None

    def group_people(members: tuple[str, ...]) -> set[Person]:
        table = by_dn if (config.groups is None or config.groups.member_is_dn) else by_localpart
        return {table[m] for m in members if m in table}

    direct: dict[str, set[Person]] = {ndn: set() for ndn in units}
    for person in directory.people:
        home = unit_of(person.ndn)
        if home is not None:
            direct[home].add(person)
    for group in directory.groups:
        if group.unit is not None:
            direct[group.unit] |= group_people(group.members)

    children: dict[str, list[str]] = {ndn: [] for ndn in units}
    for unit in directory.units:
        if unit.parent is not None:
            children[unit.parent].append(unit.ndn)

    members: dict[str, set[Person]] = {}

    def collect(ndn: str) -> set[Person]:
        if ndn not in members:
            found = set(direct[ndn])
            for child in children[ndn]:
                sub = collect(child)
                if config.units.members == "subtree":
                    found |= sub
            members[ndn] = found
        return members[ndn]

    def levels(people: set[Person]) -> dict[str, int]:
        result = {}
        for p in people:
            level = level_for(p, config)
            if level is not None:
                result[user_id(p.localpart, server)] = level
        return result

    def ids(people: set[Person]) -> frozenset[str]:
        return frozenset(user_id(p.localpart, server) for p in people)

    rooms: dict[str, DesiredRoom] = {}
    # parents first: walk from the roots down
    order: list[str] = []
    stack = sorted((u.ndn for u in directory.units if u.parent is None), reverse=True)
    while stack:
        ndn = stack.pop()
        order.append(ndn)
        stack.extend(sorted(children[ndn], reverse=True))
    for ndn in order:
        unit = units[ndn]
        people = collect(ndn)
        parent = space_key(units[unit.parent].uid) if unit.parent is not None else None
        space = space_key(unit.uid)
        rooms[space] = DesiredRoom(
            space, True, config.units.space_name.format(name=unit.name), parent, ids(people), levels(people)
        )
        room = room_key(unit.uid)
        rooms[room] = DesiredRoom(
            room, False, config.units.room_name.format(name=unit.name), space, ids(people), levels(people)
        )

    if config.groups is not None:
        holder_dn = config.groups.parent or config.units.base
        holder = units.get(normalize_dn(holder_dn))
        for group in sorted(directory.groups, key=lambda g: g.ndn):
            if group.unit is not None:
                continue
            people = group_people(group.members)
            key = group_key(group.uid)
            rooms[key] = DesiredRoom(
                key,
                False,
                config.groups.room_name.format(name=group.name),
                space_key(holder.uid) if holder is not None else None,
                ids(people),
                levels(people),
            )
    return Desired(users, rooms)
