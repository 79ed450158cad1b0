"""Desired state vs the homeserver's current state -> an ordered list of actions. Pure: it reads
nothing and changes nothing, so `--dry-run` prints exactly what a real run would do."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .config import SyncConfig
from .homeserver import RoomState, UserState
from .model import Desired

LDAP_PROVIDER = "ldap"  # the auth provider id LDAP login records, so both agree on the account

# Printed in this order; also the order actions run in.
KINDS = (
    "create_user",
    "update_user",
    "create_space",
    "create_room",
    "rename",
    "link",
    "unlink",
    "join",
    "kick",
    "power",
    "deactivate",
)


@dataclass(frozen=True)
class Action:
    kind: str
    target: str  # a user id or a room key
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(a.kind for a in self.actions)

    def summary(self) -> str:
        counts = self.counts()
        if not counts:
            return "plan: nothing to do"
        return "plan: " + ", ".join(f"{kind} {counts[kind]}" for kind in KINDS if counts[kind])

    def add(self, kind: str, target: str, text: str, **detail: Any) -> None:
        self.actions.append(Action(kind, target, text, detail))

    def sort(self) -> None:
        rank = {k: i for i, k in enumerate(KINDS)}
        self.actions.sort(key=lambda a: rank[a.kind])  # stable: parents stay before children


@dataclass
class Current:
    users: dict[str, UserState]  # every desired user and every managed user
    managed: dict[str, str]  # user id -> DN, accounts the sync manages (bridge SQLite)
    rooms: dict[str, str]  # key -> room id, verified to exist with the bot joined
    states: dict[str, RoomState]  # room id -> state


def _user_changes(desired_dn: str, displayname: str, email: str | None, cur: UserState) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if cur.displayname != displayname:
        body["displayname"] = displayname
    emails = {a for m, a in cur.threepids if m == "email"}
    if emails != ({email} if email else set()):
        others = [{"medium": m, "address": a} for m, a in cur.threepids if m != "email"]
        body["threepids"] = others + ([{"medium": "email", "address": email}] if email else [])
    if {(p, e) for p, e in cur.external_ids if p == LDAP_PROVIDER} != {(LDAP_PROVIDER, desired_dn)}:
        others_ids = [
            {"auth_provider": p, "external_id": e} for p, e in cur.external_ids if p != LDAP_PROVIDER
        ]
        body["external_ids"] = [*others_ids, {"auth_provider": LDAP_PROVIDER, "external_id": desired_dn}]
    return body


def make_plan(desired: Desired, current: Current, config: SyncConfig, bot_id: str) -> Plan:
    plan = Plan()
    unavailable: set[str] = set()  # directory people who cannot be put in rooms

    for uid, person in desired.users.items():
        cur = current.users.get(uid, UserState(exists=False))
        if not cur.exists:
            body: dict[str, Any] = {
                "displayname": person.displayname,
                "threepids": [{"medium": "email", "address": person.email}] if person.email else [],
                "external_ids": [{"auth_provider": LDAP_PROVIDER, "external_id": person.dn}],
            }
            plan.add("create_user", uid, f"create {uid} ({person.displayname})", body=body, dn=person.dn)
        elif cur.deactivated:
            unavailable.add(uid)
            plan.warnings.append(
                f"{uid} is in the directory but deactivated on the server: reactivate it by hand"
            )
        else:
            user_changes = _user_changes(person.dn, person.displayname, person.email, cur)
            if user_changes:
                fields = ", ".join(sorted(user_changes))
                plan.add("update_user", uid, f"update {uid}: {fields}", body=user_changes)

    leavers = {
        uid
        for uid in current.managed
        if uid not in desired.users
        and current.users.get(uid, UserState(exists=False)).exists
        and not current.users[uid].deactivated
    }
    people = set(desired.users) | set(current.managed)
    min_level = min((r.level for r in config.power_levels), default=None)
    by_room_id = {rid: key for key, rid in current.rooms.items()}
    empty = RoomState("")

    for key, want in desired.rooms.items():
        room_id = current.rooms.get(key)
        state = current.states.get(room_id) if room_id else None
        label = f"{'space' if want.is_space else 'room'} {want.name!r}"
        if state is None:
            plan.add(
                "create_space" if want.is_space else "create_room",
                key,
                f"create {label}",
                name=want.name,
                is_space=want.is_space,
            )
            state = empty
        elif state.name != want.name:
            plan.add("rename", key, f"rename {state.name!r} to {want.name!r}", name=want.name)

        if want.parent is not None:
            parent_id = current.rooms.get(want.parent)
            parent_state = current.states.get(parent_id) if parent_id else None
            if (
                state is empty
                or parent_state is None
                or room_id not in parent_state.children
                or parent_id not in state.parents
            ):
                plan.add(
                    "link",
                    key,
                    f"add {label} to space {desired.rooms[want.parent].name!r}",
                    parent=want.parent,
                )
        for old_parent in sorted(state.parents):
            old_key = by_room_id.get(old_parent)
            if old_key is not None and old_key != want.parent:
                plan.add("unlink", key, f"remove {label} from a space it left", parent=old_key)

        present = {u for u, m in state.members.items() if m in ("join", "invite")}
        joined = {u for u, m in state.members.items() if m == "join"}
        for uid in sorted(want.members - joined - unavailable):
            if state.members.get(uid) == "ban":
                plan.warnings.append(f"{uid} is banned from {label}: not joined")
                continue
            plan.add("join", key, f"join {uid} to {label}", user_id=uid)
        for uid in sorted((present & people) - want.members - leavers - {bot_id}):
            plan.add("kick", key, f"remove {uid} from {label}", user_id=uid)

        levels = state.levels
        changes: dict[str, int | None] = {}
        for uid, level in want.levels.items():
            if uid not in unavailable and levels.get(uid) != level:
                changes[uid] = level
        if min_level is not None:
            for uid, level in levels.items():
                if (
                    uid in people
                    and uid not in want.levels
                    and uid not in leavers
                    and uid != bot_id
                    and level >= min_level
                ):
                    changes[uid] = None
        if changes:
            text = ", ".join(f"{u}={'default' if v is None else v}" for u, v in sorted(changes.items()))
            plan.add("power", key, f"power levels in {label}: {text}", users=changes)

    # Units and groups gone from the directory: their rooms stay (history), emptied of directory people.
    for key, room_id in sorted(current.rooms.items()):
        if key in desired.rooms or room_id not in current.states:
            continue
        state = current.states[room_id]
        label = f"retired {'space' if state.is_space else 'room'} {state.name!r}"
        for old_parent in sorted(state.parents):
            old_key = by_room_id.get(old_parent)
            if old_key is not None:
                plan.add("unlink", key, f"remove {label} from its space", parent=old_key)
        present = {u for u, m in state.members.items() if m in ("join", "invite")}
        for uid in sorted((present & people) - leavers - {bot_id}):
            plan.add("kick", key, f"remove {uid} from {label}", user_id=uid)

    if config.leavers.deactivate:
        for uid in sorted(leavers):
            handover = config.leavers.handover_to
            note = f" (rooms they administer handed over to {handover})" if handover else ""
            erase = " and erase" if config.leavers.erase else ""
            plan.add("deactivate", uid, f"deactivate{erase} {uid}{note}", erase=config.leavers.erase)
    elif leavers:
        plan.warnings.append(f"{len(leavers)} account(s) left the directory; leavers.deactivate is off")
    plan.sort()
    return plan
