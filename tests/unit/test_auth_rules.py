"""Authorisation rules, table-driven from the rules in rooms/v*.md."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from nacl.signing import SigningKey
from signedjson.key import decode_signing_key_base64
from unpaddedbase64 import encode_base64

from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.signing import sign_json
from homeserver.events.auth import (
    CREATOR_POWER_LEVEL,
    AuthError,
    auth_types_for_event,
    can_redact,
    can_send,
    check_auth_events,
    check_auth_rules,
    get_named_level,
    parse_power_level,
    required_power_level,
    user_power_level,
)
from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

ALICE = "@alice:example.org"  # creator
BOB = "@bob:example.org"
CAROL = "@carol:example.org"
DAVE = "@dave:remote.org"

ALL = tuple(KNOWN_ROOM_VERSIONS)
_ts = itertools.count(1_700_000_000_000)


def versions(lo: int, hi: int = 12) -> list[str]:
    return [v for v in ALL if lo <= int(v) <= hi]


@dataclass
class Room:
    """A room whose state is set directly (bypassing auth) so each rule can be probed alone."""

    rv: RoomVersion
    state: dict[tuple[str, str], Event] = field(default_factory=dict)
    room_id: str = "!room:example.org"
    last: list[str] = field(default_factory=list)

    def event(
        self,
        type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None = None,
        prev: list[str] | None = None,
        **extra: Any,
    ) -> Event:
        pdu: dict[str, Any] = {
            "type": type,
            "sender": sender,
            "content": content,
            "room_id": self.room_id,
            "prev_events": self.last if prev is None else prev,
            "auth_events": [],
            "depth": 5,
            "origin_server_ts": next(_ts),
            "hashes": {"sha256": "x"},
            "signatures": {},
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        pdu.update(extra)
        return Event(pdu, self.rv)

    def set(self, type: str, sender: str, content: dict[str, Any], state_key: str = "") -> Event:
        event = self.event(type, sender, content, state_key)
        self.state[(type, state_key)] = event
        self.last = [event.event_id]
        return event

    def member(self, user: str, membership: str, sender: str | None = None, **content: Any) -> Event:
        return self.set("m.room.member", sender or user, {"membership": membership, **content}, user)

    def check(self, event: Event) -> None:
        check_auth_rules(self.rv, event, self.state)

    def allowed(self, event: Event) -> bool:
        try:
            self.check(event)
        except AuthError:
            return False
        return True

    def send(self, type: str, sender: str, content: dict[str, Any], state_key: str | None = None) -> bool:
        return self.allowed(self.event(type, sender, content, state_key))

    def membership_change(self, sender: str, target: str, membership: str, **content: Any) -> bool:
        return self.send("m.room.member", sender, {"membership": membership, **content}, target)


def make_room(
    version: str,
    *,
    join_rule: str | None = "public",
    power_levels: dict[str, Any] | None = None,
    with_power_levels: bool = True,
    members: dict[str, str] | None = None,
    create_content: dict[str, Any] | None = None,
    join_rule_content: dict[str, Any] | None = None,
) -> Room:
    """Alice creates and joins; then power levels (default Alice 100), join rules and `members`."""
    rv = KNOWN_ROOM_VERSIONS[version]
    room = Room(rv)
    content = dict(create_content or {})
    if not rv.implicit_room_creator:
        content.setdefault("creator", ALICE)
    if rv.room_ids_as_hashes:
        pdu = {
            "type": "m.room.create",
            "sender": ALICE,
            "content": content,
            "state_key": "",
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
            "origin_server_ts": next(_ts),
            "hashes": {"sha256": "x"},
            "signatures": {},
        }
        create = Event(pdu, rv)
        room.room_id = create.room_id
        room.state[("m.room.create", "")] = create
        room.last = [create.event_id]
    else:
        room.set("m.room.create", ALICE, content)
    room.member(ALICE, "join")
    if with_power_levels:
        default_users = {} if rv.privileged_creators else {ALICE: 100}
        room.set(
            "m.room.power_levels",
            ALICE,
            power_levels if power_levels is not None else {"users": default_users},
        )
    if join_rule is not None:
        room.set("m.room.join_rules", ALICE, join_rule_content or {"join_rule": join_rule})
    for user, membership in (members or {}).items():
        room.member(user, membership, sender=ALICE if membership in ("invite", "ban") else user)
    return room


# -- m.room.create -------------------------------------------------------------------------------


def create_event(version: str, content: dict[str, Any], **pdu: Any) -> Event:
    rv = KNOWN_ROOM_VERSIONS[version]
    base: dict[str, Any] = {
        "type": "m.room.create",
        "sender": ALICE,
        "state_key": "",
        "content": content,
        "prev_events": [],
        "auth_events": [],
        "depth": 1,
        "origin_server_ts": 1,
    }
    if not rv.room_ids_as_hashes:
        base["room_id"] = "!room:example.org"
    base.update(pdu)
    return Event(base, rv)


def create_allowed(version: str, content: dict[str, Any], **pdu: Any) -> bool:
    try:
        check_auth_rules(KNOWN_ROOM_VERSIONS[version], create_event(version, content, **pdu), {})
    except AuthError:
        return False
    return True


@pytest.mark.parametrize("version", ALL)
def test_create_rules(version: str) -> None:
    implicit = int(version) >= 11
    creator = {} if implicit else {"creator": ALICE}
    assert create_allowed(version, {**creator, "room_version": version})
    assert create_allowed(version, {**creator})
    # 1.1 prev_events
    assert not create_allowed(version, creator, prev_events=["$x"])
    # 1.3 unknown room_version
    assert not create_allowed(version, {**creator, "room_version": "999"})
    assert not create_allowed(version, {**creator, "room_version": 11})
    # 1.4 creator required before v11
    assert create_allowed(version, {}) is implicit


@pytest.mark.parametrize("version", versions(3, 11))
def test_create_room_id_domain_must_match_sender(version: str) -> None:
    content = {"creator": ALICE}
    assert not create_allowed(version, content, room_id="!room:other.org")
    assert not create_allowed(version, content, room_id="!nodomain")


def test_v12_create_rules() -> None:
    assert create_allowed("12", {"additional_creators": [BOB, DAVE]})
    assert not create_allowed("12", {}, room_id="!room:example.org")
    assert not create_allowed("12", {"additional_creators": BOB})
    assert not create_allowed("12", {"additional_creators": ["bob"]})
    assert not create_allowed("12", {"additional_creators": [5]})


# -- auth events selection and checks --------------------------------------------------------------


def test_auth_types_for_message_and_create() -> None:
    v10 = KNOWN_ROOM_VERSIONS["10"]
    assert auth_types_for_event(v10, type="m.room.create", sender=ALICE, state_key="", content={}) == []
    assert auth_types_for_event(v10, type="m.room.message", sender=BOB, state_key=None, content={}) == [
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.member", BOB),
    ]
    v12 = KNOWN_ROOM_VERSIONS["12"]
    assert auth_types_for_event(v12, type="m.room.message", sender=BOB, state_key=None, content={}) == [
        ("m.room.power_levels", ""),
        ("m.room.member", BOB),
    ]


@pytest.mark.parametrize(
    ("version", "content", "state_key", "extra"),
    [
        ("10", {"membership": "join"}, BOB, [("m.room.join_rules", "")]),
        ("10", {"membership": "knock"}, BOB, [("m.room.join_rules", "")]),
        ("10", {"membership": "leave"}, BOB, []),
        ("10", {"membership": "ban"}, CAROL, [("m.room.member", CAROL)]),
        ("10", {"membership": "invite"}, CAROL, [("m.room.member", CAROL), ("m.room.join_rules", "")]),
        (
            "10",
            {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}},
            CAROL,
            [("m.room.member", CAROL), ("m.room.join_rules", ""), ("m.room.third_party_invite", "tok")],
        ),
        (
            "10",
            {"membership": "invite", "third_party_invite": "junk"},
            CAROL,
            [("m.room.member", CAROL), ("m.room.join_rules", "")],
        ),
        (
            "9",
            {"membership": "join", "join_authorised_via_users_server": CAROL},
            BOB,
            [("m.room.join_rules", ""), ("m.room.member", CAROL)],
        ),
        # Restricted joins don't exist before v8: the authoriser is not selected.
        (
            "7",
            {"membership": "join", "join_authorised_via_users_server": CAROL},
            BOB,
            [("m.room.join_rules", "")],
        ),
    ],
)
def test_auth_types_for_membership(
    version: str, content: dict[str, Any], state_key: str, extra: list[tuple[str, str]]
) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    got = auth_types_for_event(rv, type="m.room.member", sender=BOB, state_key=state_key, content=content)
    assert got == [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", BOB), *extra]


def test_check_auth_events() -> None:
    room = make_room("10", members={BOB: "join"})
    event = room.event("m.room.message", BOB, {"body": "x"})
    create, pl, jr = (
        room.state[k] for k in [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")]
    )
    bob = room.state[("m.room.member", BOB)]
    alice = room.state[("m.room.member", ALICE)]

    got = check_auth_events(room.rv, event, [create, pl, bob])
    assert got == {
        ("m.room.create", ""): create,
        ("m.room.power_levels", ""): pl,
        ("m.room.member", BOB): bob,
    }
    check_auth_rules(room.rv, event, got)

    cases = {
        "duplicate": [create, pl, bob, bob],
        "unexpected join rules": [create, pl, bob, jr],
        "unexpected other member": [create, pl, bob, alice],
        "no create": [pl, bob],
    }
    for name, auth in cases.items():
        with pytest.raises(AuthError):
            check_auth_events(room.rv, event, auth)
        assert name
    with pytest.raises(AuthError):
        check_auth_events(room.rv, event, [create, pl, bob], rejected_event_ids={pl.event_id})
    other_room = Room(room.rv, room_id="!other:example.org")
    foreign_pl = other_room.event("m.room.power_levels", ALICE, {}, "")
    with pytest.raises(AuthError):
        check_auth_events(room.rv, event, [create, foreign_pl, bob])
    # The create event itself has no auth events to check.
    assert check_auth_events(room.rv, create, [pl]) == {}


def test_check_auth_events_v12_adds_create() -> None:
    room = make_room("12", members={BOB: "join"})
    create = room.state[("m.room.create", "")]
    pl = room.state[("m.room.power_levels", "")]
    bob = room.state[("m.room.member", BOB)]
    event = room.event("m.room.message", BOB, {})
    with pytest.raises(AuthError):  # create must NOT be selected in v12
        check_auth_events(room.rv, event, [create, pl, bob])
    got = check_auth_events(room.rv, event, [pl, bob], create_event=create)
    assert got[("m.room.create", "")] is create
    check_auth_rules(room.rv, event, got)


# -- rule: the create event must be present and match ----------------------------------------------


@pytest.mark.parametrize("version", ALL)
def test_missing_create_rejects(version: str) -> None:
    room = make_room(version, members={BOB: "join"})
    del room.state[("m.room.create", "")]
    assert not room.send("m.room.message", BOB, {})


def test_v12_room_id_must_be_the_create_event_id() -> None:
    room = make_room("12", members={BOB: "join"})
    assert room.send("m.room.message", BOB, {})
    room.room_id = "!someotherroomidwhichisnotthecreate"
    assert not room.send("m.room.message", BOB, {})


def test_create_event_from_another_room_rejects() -> None:
    room = make_room("10", members={BOB: "join"})
    room.room_id = "!elsewhere:example.org"
    assert not room.send("m.room.message", BOB, {})


# -- m.federate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(("federate", "remote_allowed"), [(True, True), (False, False), ("false", False)])
def test_m_federate(version: str, federate: Any, remote_allowed: bool) -> None:
    room = make_room(version, create_content={"m.federate": federate}, members={BOB: "join"})
    assert room.membership_change(DAVE, DAVE, "join") is remote_allowed
    room.member(DAVE, "join")
    assert room.send("m.room.message", DAVE, {}) is remote_allowed
    assert room.send("m.room.message", BOB, {})


# -- m.room.member: join ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
def test_creator_first_join(version: str) -> None:
    room = make_room(version, join_rule=None, with_power_levels=False)
    create = room.state[("m.room.create", "")]
    del room.state[("m.room.member", ALICE)]
    first = room.event("m.room.member", ALICE, {"membership": "join"}, ALICE, prev=[create.event_id])
    assert room.allowed(first)
    # Anybody else is subject to the (default: invite) join rule.
    assert not room.allowed(
        room.event("m.room.member", BOB, {"membership": "join"}, BOB, prev=[create.event_id])
    )
    # Two prev events: not "the only previous event".
    two_prev = room.event("m.room.member", ALICE, {"membership": "join"}, ALICE, prev=[create.event_id, "$x"])
    assert not room.allowed(two_prev)


def test_creator_is_content_creator_before_v11_and_sender_after() -> None:
    for version, expect_bob in (("10", True), ("11", False)):
        rv = KNOWN_ROOM_VERSIONS[version]
        room = Room(rv)
        create = room.set("m.room.create", ALICE, {"creator": BOB})
        first = room.event("m.room.member", BOB, {"membership": "join"}, BOB, prev=[create.event_id])
        assert room.allowed(first) is expect_bob, version
        alice_first = room.event(
            "m.room.member", ALICE, {"membership": "join"}, ALICE, prev=[create.event_id]
        )
        assert room.allowed(alice_first) is not expect_bob, version


# (join_rule, Bob's membership, versions allowed) — everything else rejected.
JOIN_TABLE: list[tuple[str | None, str | None, list[str]]] = [
    ("public", None, list(ALL)),
    ("public", "leave", list(ALL)),
    ("public", "join", list(ALL)),
    ("public", "invite", list(ALL)),
    ("public", "ban", []),
    ("invite", None, []),
    ("invite", "leave", []),
    ("invite", "invite", list(ALL)),
    ("invite", "join", list(ALL)),
    ("invite", "ban", []),
    (None, None, []),  # no join rules event: invite
    (None, "invite", list(ALL)),
    ("knock", None, []),
    ("knock", "knock", []),
    ("knock", "invite", versions(7)),
    ("private", "invite", []),
    ("restricted", None, []),  # no authoriser
    ("restricted", "invite", versions(8)),
    ("restricted", "join", versions(8)),
    ("knock_restricted", "invite", versions(10)),
    ("knock_restricted", "knock", []),
    ("bogus", "invite", []),
]


@pytest.mark.parametrize(("join_rule", "membership", "allowed_in"), JOIN_TABLE)
@pytest.mark.parametrize("version", ALL)
def test_join(version: str, join_rule: str | None, membership: str | None, allowed_in: list[str]) -> None:
    room = make_room(version, join_rule=join_rule, members={BOB: membership} if membership else {})
    assert room.membership_change(BOB, BOB, "join") is (version in allowed_in)


@pytest.mark.parametrize("version", ALL)
def test_cannot_join_someone_else(version: str) -> None:
    room = make_room(version, members={BOB: "join"})
    assert not room.membership_change(BOB, CAROL, "join")
    assert not room.membership_change(ALICE, CAROL, "join")


# (join_rule, authoriser, authoriser's membership, invite level, versions allowed)
RESTRICTED_TABLE: list[tuple[str, str | None, str, int, list[str]]] = [
    ("restricted", CAROL, "join", 0, versions(8)),
    ("restricted", CAROL, "join", 50, []),  # Carol (level 0) cannot invite
    ("restricted", ALICE, "join", 50, versions(8)),  # Alice (100) can
    ("restricted", CAROL, "leave", 0, []),
    ("restricted", CAROL, "invite", 0, []),
    ("restricted", DAVE, "none", 0, []),
    ("restricted", None, "join", 0, []),
    ("knock_restricted", CAROL, "join", 0, versions(10)),
    ("knock_restricted", ALICE, "join", 50, versions(10)),
    ("knock_restricted", CAROL, "leave", 0, []),
]


@pytest.mark.parametrize(
    ("join_rule", "authoriser", "auth_membership", "invite_level", "allowed_in"), RESTRICTED_TABLE
)
@pytest.mark.parametrize("version", ALL)
def test_restricted_join(
    version: str,
    join_rule: str,
    authoriser: str | None,
    auth_membership: str,
    invite_level: int,
    allowed_in: list[str],
) -> None:
    users = {} if int(version) >= 12 else {ALICE: 100}
    members = {CAROL: auth_membership} if auth_membership != "none" and authoriser == CAROL else {}
    room = make_room(
        version, join_rule=join_rule, power_levels={"users": users, "invite": invite_level}, members=members
    )
    content = {"join_authorised_via_users_server": authoriser} if authoriser else {}
    assert room.membership_change(BOB, BOB, "join", **content) is (version in allowed_in)


# -- m.room.member: invite -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
def test_invite(version: str) -> None:
    room = make_room(version, join_rule="invite", members={BOB: "join"})
    assert room.membership_change(BOB, CAROL, "invite")  # invite level defaults to 0
    assert room.membership_change(ALICE, DAVE, "invite")
    assert not room.membership_change(CAROL, DAVE, "invite")  # Carol not joined
    room.member(CAROL, "join")
    assert not room.membership_change(BOB, CAROL, "invite")  # already joined
    room.member(CAROL, "ban", sender=ALICE)
    assert not room.membership_change(ALICE, CAROL, "invite")  # banned
    room.member(CAROL, "invite", sender=ALICE)
    assert room.membership_change(BOB, CAROL, "invite")  # re-invite is fine
    room.member(CAROL, "leave")
    assert room.membership_change(BOB, CAROL, "invite")


@pytest.mark.parametrize("version", ALL)
def test_invite_needs_invite_level(version: str) -> None:
    users = {} if int(version) >= 12 else {ALICE: 100}
    room = make_room(version, power_levels={"users": users, "invite": 50}, members={BOB: "join"})
    assert not room.membership_change(BOB, CAROL, "invite")
    assert room.membership_change(ALICE, CAROL, "invite")


# -- third-party invites ---------------------------------------------------------------------------


class ThirdParty:
    def __init__(self) -> None:
        seed = b"\x05" * 32
        self.identity_key = ServerSigningKey.from_signing_key(
            decode_signing_key_base64("ed25519", "0", encode_base64(seed))
        )
        self.public_key = encode_base64(SigningKey(seed).verify_key.encode())

    def signed(
        self, mxid: str = DAVE, token: str = "tok", key: ServerSigningKey | None = None
    ) -> dict[str, Any]:
        return sign_json(
            {"mxid": mxid, "token": token, "sender": BOB}, "id.example.org", key or self.identity_key
        )


@pytest.fixture
def tp() -> ThirdParty:
    return ThirdParty()


def tp_room(version: str, tp: ThirdParty, **invite_content: Any) -> Room:
    room = make_room(version, join_rule="invite", members={BOB: "join"})
    content = invite_content or {
        "public_key": tp.public_key,
        "display_name": "d***",
        "key_validity_url": "https://x",
    }
    room.set("m.room.third_party_invite", BOB, content, "tok")
    return room


@pytest.mark.parametrize("version", ["6", "10", "11", "12"])
def test_third_party_invite_allowed(version: str, tp: ThirdParty) -> None:
    room = tp_room(version, tp)
    content = {"display_name": "d***", "signed": tp.signed()}
    assert room.membership_change(BOB, DAVE, "invite", third_party_invite=content)
    # public_keys list variant
    room = tp_room(version, tp, public_keys=[{"public_key": "AAAA"}, {"public_key": tp.public_key}])
    assert room.membership_change(BOB, DAVE, "invite", third_party_invite=content)


def test_third_party_invite_rejections(tp: ThirdParty) -> None:
    room = tp_room("10", tp)
    wrong_key = ServerSigningKey.from_signing_key(
        decode_signing_key_base64("ed25519", "0", encode_base64(b"\x09" * 32))
    )

    def invite(sender: str = BOB, target: str = DAVE, **tpi: Any) -> bool:
        return room.membership_change(sender, target, "invite", third_party_invite=tpi)

    assert invite(signed=tp.signed())
    assert not invite(signed=tp.signed(key=wrong_key))  # signature by an unknown key
    assert not invite(signed=tp.signed(mxid=CAROL))  # mxid != state_key
    assert not invite(signed=tp.signed(token="other"))  # no m.room.third_party_invite for the token
    assert not invite(sender=ALICE, signed=tp.signed())  # sender != third_party_invite sender
    assert not invite()  # no signed
    assert not invite(signed={k: v for k, v in tp.signed().items() if k != "token"})
    assert not invite(signed={k: v for k, v in tp.signed().items() if k != "signatures"})
    tampered = tp.signed()
    tampered["sender"] = ALICE
    assert not invite(signed=tampered)
    assert not room.membership_change(BOB, DAVE, "invite", third_party_invite="nope")
    room.member(DAVE, "ban", sender=ALICE)
    assert not invite(signed=tp.signed())  # target banned


# -- m.room.member: leave, kick, ban, unban --------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    ("membership", "expected_from"),
    [("join", "all"), ("invite", "all"), ("knock", "7"), ("leave", "none"), ("ban", "none"), (None, "none")],
)
def test_self_leave(version: str, membership: str | None, expected_from: str) -> None:
    room = make_room(version, join_rule="knock" if membership == "knock" else "public")
    if membership:
        room.member(BOB, membership, sender=ALICE if membership in ("invite", "ban") else BOB)
    expected = {"all": True, "none": False}.get(expected_from, int(version) >= 7)
    assert room.membership_change(BOB, BOB, "leave") is expected


def levels(version: str, **named: Any) -> dict[str, Any]:
    users = named.pop("users", {})
    if int(version) < 12:
        users = {ALICE: 100, **users}
    return {"users": users, **named}


@pytest.mark.parametrize("version", ALL)
def test_kick(version: str) -> None:
    room = make_room(
        version,
        power_levels=levels(version, users={BOB: 50, CAROL: 10}),
        members={BOB: "join", CAROL: "join"},
    )
    room.member(DAVE, "join")
    assert room.membership_change(BOB, CAROL, "leave")  # 50 >= kick 50, 10 < 50
    assert room.membership_change(BOB, DAVE, "leave")
    assert not room.membership_change(CAROL, DAVE, "leave")  # 10 < kick level
    assert not room.membership_change(BOB, ALICE, "leave")  # target not below Bob
    room.member("@eve:example.org", "join")
    assert room.membership_change(ALICE, BOB, "leave")
    # Equal levels cannot kick each other.
    room = make_room(
        version,
        power_levels=levels(version, users={BOB: 50, CAROL: 50}),
        members={BOB: "join", CAROL: "join"},
    )
    assert not room.membership_change(BOB, CAROL, "leave")
    # Not joined: cannot kick.
    room.member(BOB, "leave")
    assert not room.membership_change(BOB, DAVE, "leave")


@pytest.mark.parametrize("version", ALL)
def test_kick_level_configurable(version: str) -> None:
    room = make_room(version, power_levels=levels(version, kick=0), members={BOB: "join"})
    room.member(DAVE, "join")
    assert not room.membership_change(BOB, DAVE, "leave")  # 0 is not below 0
    room = make_room(version, power_levels=levels(version, kick=0, users={BOB: 1}), members={BOB: "join"})
    room.member(DAVE, "join")
    assert room.membership_change(BOB, DAVE, "leave")


@pytest.mark.parametrize("version", ALL)
def test_ban_and_unban(version: str) -> None:
    room = make_room(
        version,
        power_levels=levels(version, users={BOB: 50, CAROL: 60}, ban=60, kick=50),
        members={BOB: "join", CAROL: "join"},
    )
    assert not room.membership_change(BOB, DAVE, "ban")  # 50 < ban 60
    assert room.membership_change(CAROL, DAVE, "ban")
    assert room.membership_change(CAROL, "@nobody:x.org", "ban")  # banning a non-member is fine
    assert not room.membership_change(CAROL, CAROL, "ban")  # not below oneself
    assert not room.membership_change(BOB, CAROL, "ban")
    assert not room.membership_change(DAVE, BOB, "ban")  # not joined
    room.member(DAVE, "ban", sender=CAROL)
    assert not room.membership_change(BOB, DAVE, "leave")  # unban needs ban level
    assert room.membership_change(CAROL, DAVE, "leave")  # ban and kick level
    assert not room.membership_change(DAVE, DAVE, "leave")  # can't unban oneself
    assert not room.membership_change(DAVE, DAVE, "join")
    # Unbanning needs kick level too.
    room = make_room(
        version, power_levels=levels(version, users={BOB: 50}, ban=50, kick=60), members={BOB: "join"}
    )
    room.member(DAVE, "ban", sender=ALICE)
    assert not room.membership_change(BOB, DAVE, "leave")


# -- m.room.member: knock --------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    ("join_rule", "membership", "min_version"),
    [
        ("knock", None, 7),
        ("knock", "leave", 7),
        ("knock", "knock", 7),  # knocking again is allowed
        ("knock_restricted", None, 10),
        ("knock", "ban", 99),
        ("knock", "invite", 99),
        ("knock", "join", 99),
        ("public", None, 99),
        ("invite", None, 99),
        ("restricted", None, 99),
    ],
)
def test_knock(version: str, join_rule: str, membership: str | None, min_version: int) -> None:
    room = make_room(version, join_rule=join_rule, members={BOB: membership} if membership else {})
    assert room.membership_change(BOB, BOB, "knock") is (int(version) >= min_version)


@pytest.mark.parametrize("version", versions(7))
def test_knock_for_someone_else(version: str) -> None:
    room = make_room(version, join_rule="knock")
    assert not room.membership_change(ALICE, BOB, "knock")
    assert not room.membership_change(DAVE, BOB, "knock")  # Dave could knock for himself
    assert room.membership_change(DAVE, DAVE, "knock")


@pytest.mark.parametrize("version", ALL)
def test_bad_membership(version: str) -> None:
    room = make_room(version, members={BOB: "join"})
    assert not room.membership_change(BOB, BOB, "dance")
    assert not room.send("m.room.member", BOB, {"displayname": "no membership"}, BOB)
    assert not room.send("m.room.member", BOB, {"membership": 1}, BOB)
    assert not room.send("m.room.member", BOB, {"membership": "join"})  # no state_key


# -- other events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL)
def test_sender_must_be_joined(version: str) -> None:
    room = make_room(version, members={BOB: "invite", CAROL: "leave"})
    for user in (BOB, CAROL, DAVE):
        assert not room.send("m.room.message", user, {"body": "x"})
    room.member(BOB, "join")
    assert room.send("m.room.message", BOB, {"body": "x"})


@pytest.mark.parametrize("version", ALL)
def test_events_and_state_defaults(version: str) -> None:
    room = make_room(version, members={BOB: "join"})
    assert room.send("m.room.message", BOB, {})  # events_default 0
    assert not room.send("m.room.name", BOB, {"name": "x"}, "")  # state_default 50
    assert room.send("m.room.name", ALICE, {"name": "x"}, "")
    pl = levels(
        version,
        users={BOB: 10},
        events_default=20,
        state_default=5,
        events={"m.room.topic": 11, "m.custom": 0},
    )
    room = make_room(version, power_levels=pl, members={BOB: "join"})
    assert not room.send("m.room.message", BOB, {})
    assert room.send("m.custom", BOB, {})
    assert room.send("m.room.name", BOB, {}, "")
    assert not room.send("m.room.topic", BOB, {}, "")


@pytest.mark.parametrize("version", ALL)
def test_no_power_levels_event(version: str) -> None:
    room = make_room(version, with_power_levels=False, members={BOB: "join"})
    assert room.send("m.room.message", BOB, {})
    assert not room.send("m.room.name", BOB, {}, "")  # state_default is 50 even without the event
    assert room.send("m.room.name", ALICE, {}, "")  # creator has 100 (infinite in v12)
    expected = CREATOR_POWER_LEVEL if int(version) >= 12 else 100
    assert user_power_level(ALICE, room.state) == expected
    assert user_power_level(BOB, room.state) == 0


@pytest.mark.parametrize("version", ALL)
def test_state_key_of_another_user(version: str) -> None:
    room = make_room(version, power_levels=levels(version, state_default=0), members={BOB: "join"})
    assert room.send("m.custom.state", BOB, {}, BOB)
    assert not room.send("m.custom.state", BOB, {}, CAROL)
    assert not room.send("m.custom.state", ALICE, {}, CAROL)  # even with power
    assert room.send("m.custom.state", BOB, {}, "not@user")


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_event_needs_invite_level(version: str) -> None:
    room = make_room(version, power_levels=levels(version, invite=50, users={BOB: 10}), members={BOB: "join"})
    assert not room.send("m.room.third_party_invite", BOB, {}, "tok")
    assert room.send("m.room.third_party_invite", ALICE, {}, "tok")
    # Only the invite level matters, not the state default or events.
    pl = levels(version, state_default=100, events={"m.room.third_party_invite": 100})
    room = make_room(version, power_levels=pl, members={BOB: "join"})
    assert room.send("m.room.third_party_invite", BOB, {}, "tok")


@pytest.mark.parametrize("version", ALL)
def test_redaction_events_are_ordinary_events(version: str) -> None:
    room = make_room(version, members={BOB: "join"})
    # The redact level is not an auth rule: anyone joined may send a redaction.
    assert room.send("m.room.redaction", BOB, {"redacts": "$x"})
    room = make_room(
        version, power_levels=levels(version, events={"m.room.redaction": 50}), members={BOB: "join"}
    )
    assert not room.send("m.room.redaction", BOB, {})


def test_can_redact() -> None:
    room = make_room("10", power_levels=levels("10", users={BOB: 50}), members={BOB: "join", CAROL: "join"})
    assert can_redact(CAROL, CAROL, room.state)
    assert can_redact(CAROL, BOB, room.state)  # same server
    assert not can_redact(DAVE, BOB, room.state)  # other server, level 0
    assert can_redact(BOB, DAVE, room.state)  # redact level 50
    assert can_redact(ALICE, DAVE, room.state)


@pytest.mark.parametrize("version", ["3", "4", "5"])
def test_aliases_special_case_before_v6(version: str) -> None:
    room = make_room(version)
    # Allowed without membership or power, if the state key is the sender's server.
    assert room.send("m.room.aliases", DAVE, {"aliases": []}, "remote.org")
    assert not room.send("m.room.aliases", DAVE, {"aliases": []}, "example.org")
    assert not room.send("m.room.aliases", DAVE, {"aliases": []})


@pytest.mark.parametrize("version", versions(6))
def test_aliases_are_ordinary_state_from_v6(version: str) -> None:
    room = make_room(version)
    assert not room.send("m.room.aliases", DAVE, {"aliases": []}, "remote.org")
    room.member(DAVE, "join")
    assert not room.send("m.room.aliases", DAVE, {"aliases": []}, "remote.org")  # state_default 50
    assert room.send("m.room.aliases", ALICE, {"aliases": []}, "example.org")


# -- m.room.power_levels ---------------------------------------------------------------------------


def pl_room(version: str, **named: Any) -> Room:
    users = {BOB: 50, CAROL: 50, DAVE: 10, **named.pop("users", {})}
    members = {BOB: "join", CAROL: "join", DAVE: "join"}
    return make_room(version, power_levels=levels(version, users=users, **named), members=members)


def change_pl(room: Room, sender: str, **changes: Any) -> bool:
    content = dict(room.state[("m.room.power_levels", "")].content)
    for key, value in changes.items():
        if value is None:
            content.pop(key, None)
        else:
            content[key] = value
    return room.send("m.room.power_levels", sender, content, "")


def users_of(room: Room, **changes: Any) -> dict[str, Any]:
    users = dict(room.state[("m.room.power_levels", "")].content["users"])
    users.update(changes)
    return {k: v for k, v in users.items() if v is not None}


@pytest.mark.parametrize("version", ALL)
def test_power_levels_users(version: str) -> None:
    room = pl_room(version, state_default=50, events={"m.room.power_levels": 50})
    # Raise someone below you, up to your level.
    assert change_pl(room, BOB, users=users_of(room, **{DAVE: 50}))
    assert not change_pl(room, BOB, users=users_of(room, **{DAVE: 51}))
    # Add a new user at or below your level.
    assert change_pl(room, BOB, users=users_of(room, **{"@new:example.org": 50}))
    assert not change_pl(room, BOB, users=users_of(room, **{"@new:example.org": 60}))
    # Can't touch someone at your own level (change or remove)...
    assert not change_pl(room, BOB, users=users_of(room, **{CAROL: 0}))
    assert not change_pl(room, BOB, users={k: v for k, v in users_of(room).items() if k != CAROL})
    # ...but can demote or remove yourself.
    assert change_pl(room, BOB, users=users_of(room, **{BOB: 0}))
    assert change_pl(room, BOB, users={k: v for k, v in users_of(room).items() if k != BOB})
    # Removing someone below you.
    assert change_pl(room, BOB, users={k: v for k, v in users_of(room).items() if k != DAVE})
    # Unchanged entries are fine even if above you.
    if int(version) < 12:
        assert change_pl(room, BOB, users=users_of(room), ban=40)
    # Dave (10) can't send power levels at all (events level 50).
    assert not change_pl(room, DAVE, users=users_of(room, **{DAVE: 10}))


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    "name", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
def test_power_levels_named(version: str, name: str) -> None:
    room = pl_room(version, events={"m.room.power_levels": 0}, **{name: 40})
    assert change_pl(room, BOB, **{name: 50})  # up to own level
    assert not change_pl(room, BOB, **{name: 51})
    assert change_pl(room, BOB, **{name: None})  # removal: old 40 <= 50
    assert change_pl(room, BOB, **{name: 0})
    high = pl_room(version, events={"m.room.power_levels": 0}, **{name: 60})
    assert not change_pl(high, BOB, **{name: 50})  # current value above own level
    assert not change_pl(high, BOB, **{name: None})
    # Unchanged is fine while something else changes.
    assert change_pl(high, BOB, **{name: 60}, events={"m.room.power_levels": 0, "m.other": 0})


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("name", ["events", "notifications"])
def test_power_levels_maps(version: str, name: str) -> None:
    checked = name == "events" or int(version) >= 6
    base: dict[str, Any] = {"m.a": 40, "m.high": 60}
    if name == "events":
        base["m.room.power_levels"] = 0
    room = pl_room(version, **{name: base})
    extra = {} if name == "events" else {"events": {"m.room.power_levels": 0}}
    if name != "events":
        room = pl_room(version, **{name: base}, **extra)
    assert change_pl(room, BOB, **{name: {**base, "m.a": 50}})
    assert change_pl(room, BOB, **{name: {**base, "m.new": 50}})
    assert change_pl(room, BOB, **{name: {k: v for k, v in base.items() if k != "m.a"}})
    assert change_pl(room, BOB, **{name: {**base, "m.new": 51}}) is not checked
    assert change_pl(room, BOB, **{name: {**base, "m.high": 0}}) is not checked
    assert change_pl(room, BOB, **{name: {k: v for k, v in base.items() if k != "m.high"}}) is not checked


@pytest.mark.parametrize("version", ALL)
def test_initial_power_levels_are_unrestricted(version: str) -> None:
    room = make_room(version, with_power_levels=False, members={BOB: "join"})
    users = {BOB: 1000} if int(version) >= 12 else {ALICE: 100, BOB: 1000}
    assert room.send("m.room.power_levels", ALICE, {"users": users, "ban": 9000}, "")
    assert not room.send("m.room.power_levels", BOB, {"users": users}, "")  # Bob has 0 < state_default


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    ("content", "valid_before_v10", "valid_from_v10"),
    [
        ({"users": {BOB: 10}}, True, True),
        ({"users": {BOB: "10"}}, True, False),
        ({"users": {BOB: " +10 "}}, True, False),
        ({"users": {BOB: "-007"}}, True, False),
        ({"users": {BOB: "1_0"}}, False, False),
        ({"users": {BOB: "ten"}}, False, False),
        ({"users": {BOB: True}}, False, False),
        ({"users": {BOB: None}}, False, False),
        ({"users": {"bob": 10}}, False, False),
        ({"users": {"@bob": 10}}, False, False),
        ({"users": []}, False, False),
        ({"ban": "50"}, True, False),
        ({"ban": 50}, True, True),
        ({"ban": True}, True, False),  # only users values are type-checked before v10
        ({"events": {"m.x": "5"}}, True, False),
        ({"events": {"m.x": 5}}, True, True),
        ({"events": []}, True, False),
        ({"notifications": {"room": "5"}}, True, False),
        ({"notifications": "x"}, True, False),
    ],
)
def test_power_levels_value_types(
    version: str, content: dict[str, Any], valid_before_v10: bool, valid_from_v10: bool
) -> None:
    # No previous power levels event, so only the validity rules apply.
    room = make_room(version, with_power_levels=False)
    expected = valid_from_v10 if int(version) >= 10 else valid_before_v10
    users = content.get("users", {})
    if int(version) < 12 and isinstance(users, dict):
        content = {**content, "users": {ALICE: 100, **users}}
    elif int(version) < 12:
        content = {**content}
    assert room.send("m.room.power_levels", ALICE, content, "") is expected


@pytest.mark.parametrize("version", versions(3, 9))
def test_stringy_levels_are_compared_numerically(version: str) -> None:
    room = make_room(
        version, power_levels={"users": {ALICE: "100", BOB: " 50 "}, "ban": "050"}, members={BOB: "join"}
    )
    assert user_power_level(BOB, room.state) == 50
    assert change_pl(room, BOB, ban=50)  # "050" == 50: unchanged
    assert not change_pl(room, BOB, ban=51)
    assert room.send("m.room.name", BOB, {}, "")  # 50 >= state_default 50


def test_invalid_stored_level_rejects_dependent_events() -> None:
    room = make_room(
        "9", power_levels={"users": {ALICE: 100}, "state_default": "lots"}, members={BOB: "join"}
    )
    assert not room.send("m.room.name", ALICE, {}, "")
    assert room.send("m.room.message", BOB, {})  # events_default is fine
    assert not can_send(ALICE, "m.room.name", "", room.state)


# -- v12 creators ----------------------------------------------------------------------------------


def test_v12_creators_have_infinite_power() -> None:
    room = make_room(
        "12",
        create_content={"additional_creators": [BOB]},
        power_levels={"users": {CAROL: 100}, "events": {"m.room.tombstone": 150}},
        members={BOB: "join", CAROL: "join"},
    )
    assert user_power_level(ALICE, room.state) == CREATOR_POWER_LEVEL
    assert user_power_level(BOB, room.state) == CREATOR_POWER_LEVEL
    assert room.send("m.room.tombstone", BOB, {}, "")
    assert not room.send("m.room.tombstone", CAROL, {}, "")
    assert not room.membership_change(CAROL, BOB, "ban")  # creators cannot be kicked or banned
    assert not room.membership_change(ALICE, BOB, "ban")  # not even by another creator
    assert room.membership_change(BOB, CAROL, "ban")
    # Creators cannot be listed in users.
    assert not change_pl(room, ALICE, users={CAROL: 100, BOB: 50})
    assert not change_pl(room, ALICE, users={CAROL: 100, ALICE: 100})
    assert change_pl(room, ALICE, users={CAROL: 50})


def test_v11_creator_has_no_special_power_with_power_levels() -> None:
    room = make_room("11", power_levels={"users": {BOB: 100}}, members={BOB: "join"})
    assert user_power_level(ALICE, room.state) == 0
    assert not room.send("m.room.name", ALICE, {}, "")


# -- helpers ---------------------------------------------------------------------------------------


def test_level_helpers() -> None:
    assert required_power_level("m.room.message", False, None) == 0
    assert required_power_level("m.room.name", True, None) == 50
    assert required_power_level("m.room.name", True, {}) == 50
    assert required_power_level("m.room.name", True, {"state_default": 10}) == 10
    assert required_power_level("m.room.name", True, {"events": {"m.room.name": 70}}) == 70
    assert (
        required_power_level("m.room.message", False, {"events": {"m.room.name": 70}, "events_default": 5})
        == 5
    )
    assert required_power_level("m.x", False, {"events": {"m.x": None}}) == 0
    assert get_named_level("ban", None) == 50 and get_named_level("invite", None) == 0
    assert get_named_level("kick", {"kick": 10}) == 10 and get_named_level("redact", {"redact": None}) == 50
    with pytest.raises(AuthError):
        required_power_level("m.x", False, {"events": "junk"})
    values = (5, "5", " -5 ", "+5", "5.0", "", 5.0, False, None)
    assert [parse_power_level(v) for v in values] == [5, 5, -5, 5, None, None, None, None, None]


def test_can_send() -> None:
    room = make_room(
        "11",
        power_levels={"users": {ALICE: 100, BOB: 10, CAROL: 50}, "events_default": 10},
        members={BOB: "join"},
    )
    assert can_send(BOB, "m.room.message", None, room.state)
    assert not can_send(BOB, "m.room.name", "", room.state)
    assert can_send(ALICE, "m.room.name", "", room.state)
    assert not can_send(CAROL, "m.room.message", None, room.state)  # enough power but not joined
    assert not can_send(ALICE, "m.custom", BOB, room.state)


def test_auth_error_shape() -> None:
    room = make_room("11")
    with pytest.raises(AuthError) as exc:
        room.check(room.event("m.room.message", BOB, {}))
    assert exc.value.status == 403 and exc.value.errcode == "M_FORBIDDEN"
    assert BOB in exc.value.error
