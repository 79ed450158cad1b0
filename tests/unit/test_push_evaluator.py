"""Push rule evaluation: every condition kind with the spec's own examples, the default rule set,
user rules merged with the defaults, and the ordering of user rules."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from homeserver.core.errors import MatrixError
from homeserver.core.paths import split_path
from homeserver.push.default_rules import ALL_DEFAULT_RULES
from homeserver.push.evaluator import (
    PushRuleEvaluator,
    compile_condition,
    default_evaluator,
    evaluate_members,
    glob_matches,
    is_missing,
    lookup,
    prepare_event,
)
from homeserver.push.rules import (
    check_actions,
    check_new_rule_id,
    effective_rules,
    parse_rule_body,
    place_rule,
    priorities_for,
    ruleset_for_client,
)

ALICE = "@alice:example.org"
BOB = "@bob:example.org"
ROOM = "!room:example.org"

NOTIFY_SOUND = ["notify", {"set_tweak": "sound", "value": "default"}]
HIGHLIGHT_SOUND = ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]
HIGHLIGHT = ["notify", {"set_tweak": "highlight"}]


def _event(event_type: str = "m.room.message", sender: str = BOB, /, **content: Any) -> dict[str, Any]:
    return {"type": event_type, "sender": sender, "room_id": ROOM, "event_id": "$e", "content": content}


def _matches(condition: dict[str, Any], event: dict[str, Any], **ctx: Any) -> bool:
    """Whether a single-condition override rule matches for ALICE."""
    rules = {"override": [{"rule_id": "x", "conditions": [condition], "actions": ["notify"]}]}
    ctx.setdefault("room_member_count", 5)
    return PushRuleEvaluator(rules).actions_for(event, user_id=ALICE, **ctx) is not None


# -- dotted paths and globs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("content.body", ("content", "body")),
        ("content.m\\.relates_to.rel_type", ("content", "m.relates_to", "rel_type")),
        ("content.m\\\\foo", ("content", "m\\foo")),
        ("content.m\\x", ("content", "m\\x")),  # other escapes are literal
        ("content.m\\.mentions.user_ids", ("content", "m.mentions", "user_ids")),
        ("type", ("type",)),
    ],
)
def test_split_path(key: str, parts: tuple[str, ...]) -> None:
    assert split_path(key) == parts


def test_lookup() -> None:
    event = {"content": {"m.relates_to": {"rel_type": "m.replace"}, "n": None}}
    assert lookup(event, split_path("content.m\\.relates_to.rel_type")) == "m.replace"
    assert lookup(event, ("content", "n")) is None
    assert is_missing(lookup(event, ("content", "missing")))
    assert is_missing(lookup(event, ("content", "n", "deeper")))


@pytest.mark.parametrize(
    ("pattern", "value", "words", "expected"),
    [
        # spec: `lunc?*` against content.topic
        ("lunc?*", "Lunch plans", False, True),
        ("lunc?*", "LUNCH", False, True),
        ("lunc?*", " lunch", False, False),
        ("lunc?*", "lunc", False, False),
        # spec: `ex*ple` against content.body (word boundaries)
        ("ex*ple", "An example event.", True, True),
        ("ex*ple", "exple", True, True),
        ("ex*ple", "An exciting triple-whammy", True, True),
        ("ex*ple", "examples", True, False),
        ("cake", "I like cake!", True, True),
        ("cake", "cupcake", True, False),
        ("cake", "cake_pop", True, False),  # `_` is a word character
        ("CAKE", "cake", True, True),
        ("@room", "hello @room!", True, True),
        ("@room", "hello@room", True, False),
        ("m.notice", "m.notice", False, True),
        ("m.notice", "m.noticeX", False, False),
        ("m.*", "m.room.message", False, True),
        ("*", "", False, True),
        ("", "", False, True),
        ("a?c", "a\nc", False, True),
        # non-ASCII characters are word boundaries (Korean particles after a name)
        ("철수", "철수님 안녕하세요", True, True),
        ("alice", "앨리스alice씨", True, True),
    ],
)
def test_globs(pattern: str, value: str, words: bool, expected: bool) -> None:
    assert glob_matches(pattern, value, words=words) is expected


def _reference_glob(pattern: str, value: str, words: bool) -> bool:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    if words:
        return re.search(f"(?<![A-Za-z0-9_])(?:{body})(?![A-Za-z0-9_])", value, re.I | re.S) is not None
    return re.fullmatch(body, value, re.I | re.S) is not None


def test_globs_agree_with_a_regex_translation() -> None:
    rnd = random.Random(1)
    for _ in range(1500):
        pattern = "".join(rnd.choice("ab*?. _") for _ in range(rnd.randint(0, 6)))
        value = "".join(rnd.choice("abAB. _-") for _ in range(rnd.randint(0, 10)))
        for words in (False, True):
            expected = _reference_glob(pattern, value, words)
            assert glob_matches(pattern, value, words=words) is expected, (pattern, value, words)


def test_globs_do_not_backtrack() -> None:
    # A regex translation would take ages on these; the piecewise matcher is linear.
    hostile = "*a" * 12 + "*b"
    assert glob_matches(hostile, "a" * 50_000, words=True) is False
    assert glob_matches(hostile, "a" * 50_000) is False
    assert glob_matches(hostile, "a" * 50_000 + "b") is True


# -- conditions -----------------------------------------------------------------------------------

TOPIC = {
    "content": {"topic": "Lunch plans"},
    "event_id": "$143273582443PhrSn:example.org",
    "room_id": "!636q39766251:example.com",
    "sender": "@example:example.org",
    "state_key": "",
    "type": "m.room.topic",
}
CREATE = {
    "content": {
        "creator": "@example:example.org",
        "m.federate": True,
        "predecessor": {"event_id": "$something:example.org", "room_id": "!oldroom:example.org"},
        "room_version": "1",
    },
    "event_id": "$143273582443PhrSn:example.org",
    "room_id": "!636q39766251:example.com",
    "sender": "@example:example.org",
    "state_key": "",
    "type": "m.room.create",
}
ALIASES = {
    "content": {
        "alias": "#somewhere:localhost",
        "alt_aliases": ["#somewhere:example.org", "#myroom:example.com"],
    },
    "room_id": "!jEsUZKDJdhlrceRyVU:example.org",
    "sender": "@example:example.org",
    "state_key": "",
    "type": "m.room.canonical_alias",
}


def _with(event: dict[str, Any], **content: Any) -> dict[str, Any]:
    return {**event, "content": {**event["content"], **content}}


CONDITION_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # event_match (spec examples)
    ("topic glob", {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}, TOPIC, True),
    (
        "topic upper",
        {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"},
        _with(TOPIC, topic="LUNCH"),
        True,
    ),
    (
        "topic space",
        {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"},
        _with(TOPIC, topic=" lunch"),
        False,
    ),
    (
        "topic short",
        {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"},
        _with(TOPIC, topic="lunc"),
        False,
    ),
    (
        "topic null",
        {"kind": "event_match", "key": "content.topic", "pattern": "*"},
        _with(TOPIC, topic=None),
        False,
    ),
    ("absent key", {"kind": "event_match", "key": "content.nope", "pattern": "*"}, TOPIC, False),
    ("non-string", {"kind": "event_match", "key": "content.m\\.federate", "pattern": "*"}, CREATE, False),
    ("state_key empty", {"kind": "event_match", "key": "state_key", "pattern": ""}, TOPIC, True),
    (
        "body words",
        {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"},
        _event(body="An example event."),
        True,
    ),
    (
        "body triple",
        {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"},
        _event(body="An exciting triple-whammy"),
        True,
    ),
    ("no pattern", {"kind": "event_match", "key": "type"}, TOPIC, False),
    # event_property_is (spec examples)
    (
        "federate true",
        {"kind": "event_property_is", "key": "content.m\\.federate", "value": True},
        CREATE,
        True,
    ),
    (
        "federate str",
        {"kind": "event_property_is", "key": "content.m\\.federate", "value": True},
        _with(CREATE, **{"m.federate": "true"}),
        False,
    ),
    (
        "federate int",
        {"kind": "event_property_is", "key": "content.m\\.federate", "value": True},
        _with(CREATE, **{"m.federate": 1}),
        False,
    ),
    ("int is not bool", {"kind": "event_property_is", "key": "content.n", "value": 1}, _event(n=True), False),
    ("int", {"kind": "event_property_is", "key": "content.n", "value": 1}, _event(n=1), True),
    ("null", {"kind": "event_property_is", "key": "content.n", "value": None}, _event(n=None), True),
    ("null absent", {"kind": "event_property_is", "key": "content.n", "value": None}, _event(), False),
    (
        "string exact",
        {"kind": "event_property_is", "key": "content.msgtype", "value": "m.text"},
        _event(msgtype="m.TEXT"),
        False,
    ),
    (
        "compound value",
        {"kind": "event_property_is", "key": "content.p", "value": {"a": 1}},
        _event(p={"a": 1}),
        False,
    ),
    (
        "nested escaped",
        {"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"},
        _event(**{"m.relates_to": {"rel_type": "m.replace"}}),
        True,
    ),
    # event_property_contains (spec examples)
    (
        "alias in list",
        {"kind": "event_property_contains", "key": "content.alt_aliases", "value": "#myroom:example.com"},
        ALIASES,
        True,
    ),
    (
        "partial value",
        {"kind": "event_property_contains", "key": "content.alt_aliases", "value": ":example.com"},
        ALIASES,
        False,
    ),
    (
        "not a list",
        {"kind": "event_property_contains", "key": "content.alias", "value": "#somewhere:localhost"},
        ALIASES,
        False,
    ),
    (
        "bool vs int in list",
        {"kind": "event_property_contains", "key": "content.l", "value": True},
        _event(l=[1, 2]),
        False,
    ),
    (
        "bool in list",
        {"kind": "event_property_contains", "key": "content.l", "value": True},
        _event(l=[{"x": 1}, True]),
        True,
    ),
    # unknown kinds never match
    ("unknown kind", {"kind": "org.example.future"}, TOPIC, False),
    ("no kind", {"key": "type", "pattern": "*"}, TOPIC, False),
    ("not an object", "event_match", TOPIC, False),  # type: ignore[list-item]
]


@pytest.mark.parametrize(
    ("name", "condition", "event", "expected"), CONDITION_CASES, ids=[c[0] for c in CONDITION_CASES]
)
def test_conditions(name: str, condition: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert _matches(condition, event) is expected


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        ("2", 2, True),
        ("2", 3, False),
        ("==2", 2, True),
        ("<10", 9, True),
        ("<10", 10, False),
        (">10", 11, True),
        (">10", 10, False),
        ("<=10", 10, True),
        ("<=10", 11, False),
        (">=10", 10, True),
        (">=10", 9, False),
        ("=2", 2, False),  # malformed: never matches
        ("two", 2, False),
        ("", 0, False),
    ],
)
def test_room_member_count(spec: str, count: int, expected: bool) -> None:
    condition = {"kind": "room_member_count", "is": spec}
    assert _matches(condition, _event(body="x"), room_member_count=count) is expected


@pytest.mark.parametrize(
    ("power", "levels", "expected"),
    [
        (50, None, True),  # default `room` level is 50
        (49, None, False),
        (10, {"room": 10}, True),
        (9, {"room": 10}, False),
        (20, {"room": "20"}, True),  # string levels of old rooms
        (100, {"room": 101}, False),
        (None, None, False),
    ],
)
def test_sender_notification_permission(
    power: int | None, levels: dict[str, Any] | None, expected: bool
) -> None:
    condition = {"kind": "sender_notification_permission", "key": "room"}
    result = _matches(condition, _event(body="x"), sender_power_level=power, notification_power_levels=levels)
    assert result is expected


@pytest.mark.parametrize(
    ("display_name", "body", "expected"),
    [
        ("Alice", "hey alice, lunch?", True),
        ("Alice", "ALICE!", True),
        ("Alice", "Alicent is here", False),
        ("Alice", "malice", False),
        ("Alice Smith", "ping alice smith now", True),
        ("Alice Smith", "ping alice  smith", False),
        ("Al*ce", "Alice", False),  # display names are literal, not globs
        ("Al*ce", "hi Al*ce", True),
        ("앨리스", "앨리스님 안녕하세요", True),
        ("", "anything", False),
        (None, "anything", False),
    ],
)
def test_contains_display_name(display_name: str | None, body: str, expected: bool) -> None:
    assert (
        _matches({"kind": "contains_display_name"}, _event(body=body), display_name=display_name) is expected
    )


def test_compile_interns_identical_conditions() -> None:
    a = compile_condition({"kind": "event_match", "key": "type", "pattern": "m.room.message"})
    b = compile_condition({"kind": "event_match", "key": "type", "pattern": "m.room.message"})
    assert a is b
    one = compile_condition({"kind": "event_property_is", "key": "content.x", "value": 1})
    true = compile_condition({"kind": "event_property_is", "key": "content.x", "value": True})
    assert one is not true


# -- the default rules ----------------------------------------------------------------------------

DEFAULT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], Any]] = [
    ("group message", _event(msgtype="m.text", body="hello"), {}, ["notify"]),
    ("one-to-one message", _event(msgtype="m.text", body="hello"), {"room_member_count": 2}, NOTIFY_SOUND),
    ("notice", _event(msgtype="m.notice", body="bot says alice"), {}, []),
    ("own message", _event("m.room.message", ALICE, body="hi"), {}, None),
    (
        "invite for me",
        {**_event("m.room.member", membership="invite"), "state_key": ALICE},
        {},
        NOTIFY_SOUND,
    ),
    ("invite for someone else", {**_event("m.room.member", membership="invite"), "state_key": BOB}, {}, []),
    ("join", {**_event("m.room.member", membership="join"), "state_key": BOB}, {}, []),
    ("user mention", _event(body="hey", **{"m.mentions": {"user_ids": [ALICE]}}), {}, HIGHLIGHT_SOUND),
    ("other's mention", _event(body="hey", **{"m.mentions": {"user_ids": [BOB]}}), {}, ["notify"]),
    ("display name (legacy)", _event(body="Hi Alice A."), {"display_name": "Alice A."}, HIGHLIGHT_SOUND),
    (
        "display name with m.mentions",
        _event(body="Hi Alice A.", **{"m.mentions": {}}),
        {"display_name": "Alice A."},
        ["notify"],
    ),
    ("localpart (legacy)", _event(body="ALICE: look"), {}, HIGHLIGHT_SOUND),
    (
        "localpart with m.mentions",
        _event(body="alice: look", **{"m.mentions": {"user_ids": []}}),
        {},
        ["notify"],
    ),
    ("localpart inside a word", _event(body="malice"), {}, ["notify"]),
    (
        "room mention",
        _event(body="all", **{"m.mentions": {"room": True}}),
        {"sender_power_level": 50},
        HIGHLIGHT,
    ),
    (
        "room mention, no power",
        _event(body="all", **{"m.mentions": {"room": True}}),
        {"sender_power_level": 0},
        ["notify"],
    ),
    ("@room (legacy)", _event(body="@room meeting"), {"sender_power_level": 100}, HIGHLIGHT),
    (
        "@room with m.mentions",
        _event(body="@room meeting", **{"m.mentions": {}}),
        {"sender_power_level": 100},
        ["notify"],
    ),
    ("@room, no power", _event(body="@room meeting"), {"sender_power_level": 0}, ["notify"]),
    ("tombstone", {**_event("m.room.tombstone", body="moved"), "state_key": ""}, {}, HIGHLIGHT),
    ("tombstone non-state", _event("m.room.tombstone", body="moved"), {}, None),
    ("reaction", _event("m.reaction"), {}, []),
    ("server acl", {**_event("m.room.server_acl"), "state_key": ""}, {}, []),
    ("edit", _event(body="* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}), {}, []),
    (
        "edit mentioning me",
        _event(
            body="* x", **{"m.relates_to": {"rel_type": "m.replace"}, "m.mentions": {"user_ids": [ALICE]}}
        ),
        {},
        HIGHLIGHT_SOUND,
    ),
    ("call", _event("m.call.invite"), {}, ["notify", {"set_tweak": "sound", "value": "ring"}]),
    ("encrypted group", _event("m.room.encrypted", ciphertext="x"), {}, ["notify"]),
    ("encrypted 1:1", _event("m.room.encrypted", ciphertext="x"), {"room_member_count": 2}, NOTIFY_SOUND),
    ("poll start", _event("m.poll.start"), {}, ["notify"]),
    ("poll start 1:1", _event("m.poll.start"), {"room_member_count": 2}, NOTIFY_SOUND),
    ("poll end", _event("m.poll.end"), {}, ["notify"]),
    ("poll response", _event("m.poll.response"), {}, []),
    ("unstable poll start", _event("org.matrix.msc3381.poll.start"), {"room_member_count": 2}, NOTIFY_SOUND),
    ("unstable poll end", _event("org.matrix.msc3381.poll.end"), {}, ["notify"]),
    ("unstable poll response", _event("org.matrix.msc3381.poll.response"), {}, []),
    (
        "jitsi widget",
        {**_event("im.vector.modular.widgets", **{"type": "jitsi"}), "state_key": "w1"},
        {},
        ["notify"],
    ),
    ("other state", {**_event("m.room.name", name="x"), "state_key": ""}, {}, None),
    ("unknown type", _event("org.example.thing", body="alice"), {}, HIGHLIGHT_SOUND),
    ("unknown type, no body", _event("org.example.thing"), {}, None),
]


@pytest.mark.parametrize(
    ("name", "event", "ctx", "expected"), DEFAULT_CASES, ids=[c[0] for c in DEFAULT_CASES]
)
def test_default_rules(name: str, event: dict[str, Any], ctx: dict[str, Any], expected: Any) -> None:
    ctx = {"room_member_count": 10, "notification_power_levels": {"room": 50}, **ctx}
    assert default_evaluator().actions_for(event, user_id=ALICE, **ctx) == expected
    # The same evaluation through an explicitly prepared event gives the same answer.
    display_name = ctx.pop("display_name", None)
    prepared = prepare_event(event, **ctx)
    assert default_evaluator().actions_for(prepared, user_id=ALICE, display_name=display_name) == expected


def test_default_rule_ids_and_order() -> None:
    ruleset = ruleset_for_client(effective_rules(), ALICE)
    override = [r["rule_id"] for r in ruleset["override"]]
    assert override[:4] == [
        ".m.rule.master",
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
    ]
    for rule_id in (
        ".m.rule.is_user_mention",
        ".m.rule.contains_display_name",
        ".m.rule.is_room_mention",
        ".m.rule.roomnotif",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ):
        assert rule_id in override
    assert override.index(".m.rule.is_user_mention") < override.index(".m.rule.contains_display_name")
    assert override.index(".m.rule.is_room_mention") < override.index(".m.rule.roomnotif")
    assert [r["rule_id"] for r in ruleset["content"]] == [".m.rule.contains_user_name"]
    underride = [r["rule_id"] for r in ruleset["underride"]]
    assert underride[:5] == [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ]
    for rule_id in (
        ".m.rule.poll_start_one_to_one",
        ".m.rule.poll_start",
        ".m.rule.poll_end_one_to_one",
        ".m.rule.poll_end",
    ):
        assert rule_id in underride
    assert ruleset["room"] == [] and ruleset["sender"] == []
    assert all(r.rule_id.startswith(".") and r.default for r in ALL_DEFAULT_RULES)


def test_client_view_resolves_templates() -> None:
    ruleset = ruleset_for_client(effective_rules(), ALICE)
    by_id = {r["rule_id"]: r for kind in ruleset.values() for r in kind}
    assert by_id[".m.rule.master"] == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": False,
        "conditions": [],
        "actions": [],
    }
    assert by_id[".m.rule.invite_for_me"]["conditions"][2] == {
        "kind": "event_match",
        "key": "state_key",
        "pattern": ALICE,
    }
    assert by_id[".m.rule.is_user_mention"]["conditions"] == [
        {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": ALICE}
    ]
    assert by_id[".m.rule.contains_user_name"]["pattern"] == "alice"
    assert "conditions" not in by_id[".m.rule.contains_user_name"]


# -- user rules merged with the defaults ----------------------------------------------------------


class Row:
    def __init__(
        self, kind: str, rule_id: str, priority: int = 0, *, enabled: bool = True, **kw: Any
    ) -> None:
        self.kind = kind
        self.rule_id = rule_id
        self.priority = priority
        self.conditions = kw.get("conditions")
        self.pattern = kw.get("pattern")
        self.actions = kw.get("actions", ["notify"])
        self.enabled = enabled


class Setting:
    def __init__(
        self, kind: str, rule_id: str, enabled: bool | None = None, actions: list[Any] | None = None
    ):
        self.kind = kind
        self.rule_id = rule_id
        self.enabled = enabled
        self.actions = actions


def _evaluate(rows: list[Row], settings: list[Setting], event: dict[str, Any], **ctx: Any) -> Any:
    ctx.setdefault("room_member_count", 10)
    return PushRuleEvaluator(effective_rules(rows, settings)).actions_for(event, user_id=ALICE, **ctx)


def test_master_rule_silences_everything() -> None:
    settings = [Setting("override", ".m.rule.master", enabled=True)]
    assert _evaluate([], settings, _event(body="alice!")) == []
    assert _evaluate([], settings, _event(body="x", **{"m.mentions": {"user_ids": [ALICE]}})) == []


def test_master_rule_beats_user_overrides() -> None:
    rows = [Row("override", "loud", 1, conditions=[], actions=["notify"])]
    assert _evaluate(rows, [Setting("override", ".m.rule.master", enabled=True)], _event(body="x")) == []
    assert _evaluate(rows, [], _event(msgtype="m.notice", body="x")) == ["notify"]


def test_disabled_and_changed_default_rules() -> None:
    notice = _event(msgtype="m.notice", body="hi")
    assert _evaluate([], [Setting("override", ".m.rule.suppress_notices", enabled=False)], notice) == [
        "notify"
    ]
    settings = [Setting("underride", ".m.rule.message", actions=["dont_notify"])]
    assert _evaluate([], settings, _event(body="hi")) == []  # historical actions are stripped
    settings = [
        Setting("underride", ".m.rule.message", actions=["notify", {"set_tweak": "sound", "value": "x"}])
    ]
    assert _evaluate([], settings, _event(body="hi")) == ["notify", {"set_tweak": "sound", "value": "x"}]


def test_room_and_sender_rules() -> None:
    rows = [
        Row("room", ROOM, 1, actions=[]),
        Row("sender", BOB, 1, actions=["notify", {"set_tweak": "sound", "value": "bob"}]),
    ]
    assert _evaluate(rows, [], _event(body="hi")) == []  # room rules come before sender rules
    assert _evaluate(rows[1:], [], _event(body="hi")) == ["notify", {"set_tweak": "sound", "value": "bob"}]
    other_room = {**_event(body="hi"), "room_id": "!other:example.org", "sender": "@carol:example.org"}
    assert _evaluate(rows, [], other_room) == ["notify"]


def test_content_rules_and_priority() -> None:
    # The spec's examples: "cake" with a sound, "cake*lie" placed before it.
    rows = [
        Row(
            "content",
            "SSByZWFsbHkgbGlrZSBjYWtl",
            1,
            pattern="cake",
            actions=["notify", {"set_tweak": "sound", "value": "cakealarm.wav"}],
        ),
        Row("content", "U3BvbmdlIGNha2UgaXMgYmVzdA", 2, pattern="cake*lie", actions=["notify"]),
    ]
    assert _evaluate(rows, [], _event(body="the cake is a lie")) == ["notify"]
    assert _evaluate(rows, [], _event(body="I want cake")) == [
        "notify",
        {"set_tweak": "sound", "value": "cakealarm.wav"},
    ]
    # A user content rule comes before the default content rule.
    assert _evaluate(rows, [], _event(body="alice wants cake")) == [
        "notify",
        {"set_tweak": "sound", "value": "cakealarm.wav"},
    ]


def test_spec_beer_override_example() -> None:
    rows = [
        Row(
            "override",
            "U2VlIHlvdSBpbiBUaGUgRHVrZQ",
            1,
            conditions=[
                {"kind": "event_match", "key": "content.body", "pattern": "beer"},
                {"kind": "room_member_count", "is": "<=10"},
            ],
            actions=["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}],
        )
    ]
    beer = _event(body="Beer time?")
    assert _evaluate(rows, [], beer, room_member_count=10) == [
        "notify",
        {"set_tweak": "sound", "value": "beeroclock.wav"},
    ]
    assert _evaluate(rows, [], beer, room_member_count=11) == ["notify"]


def test_user_rule_with_unknown_condition_never_matches() -> None:
    rows = [Row("override", "future", 1, conditions=[{"kind": "org.example.new"}], actions=[])]
    assert _evaluate(rows, [], _event(body="hi")) == ["notify"]


def test_user_rules_cannot_use_templates() -> None:
    rows = [
        Row(
            "override",
            "t",
            1,
            conditions=[{"kind": "event_match", "key": "sender", "pattern_type": "user_id"}],
            actions=[],
        )
    ]
    assert _evaluate(rows, [], _event("m.room.message", "@carol:example.org", body="hi")) == ["notify"]


def test_disabled_user_rule() -> None:
    rows = [Row("override", "mute", 1, enabled=False, conditions=[], actions=[])]
    assert _evaluate(rows, [], _event(body="hi")) == ["notify"]


def test_evaluators_share_event_work_but_not_answers() -> None:
    event = _event(body="hello alice and bob", **{})
    members = [
        (ALICE, "Alice", default_evaluator()),
        (BOB, "Bob", default_evaluator()),  # the sender
        ("@carol:example.org", "Carol", default_evaluator()),
        ("@dave:example.org", "Dave", PushRuleEvaluator(effective_rules([Row("room", ROOM, 1, actions=[])]))),
    ]
    results = dict(
        evaluate_members(
            event, members, room_member_count=4, sender_power_level=0, notification_power_levels=None
        )
    )
    assert results == {ALICE: HIGHLIGHT_SOUND, "@carol:example.org": ["notify"], "@dave:example.org": []}


def test_cached_prepared_event_respects_room_inputs() -> None:
    event = _event(body="hi")
    ev = default_evaluator()
    assert ev.actions_for(event, user_id=ALICE, room_member_count=2) == NOTIFY_SOUND
    assert ev.actions_for(event, user_id=ALICE, room_member_count=3) == ["notify"]


# -- validation and ordering of user rules --------------------------------------------------------


@pytest.mark.parametrize("rule_id", [".mine", "a/b", "a\\b", ""])
def test_invalid_rule_ids(rule_id: str) -> None:
    with pytest.raises(MatrixError) as err:
        check_new_rule_id("override", rule_id)
    assert err.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize(
    "actions",
    ["notify", ["notify", "bogus"], [{"value": "x"}], [{"set_tweak": 1}], [1]],
)
def test_invalid_actions(actions: Any) -> None:
    with pytest.raises(MatrixError) as err:
        check_actions(actions)
    assert err.value.status == 400


def test_valid_actions() -> None:
    assert check_actions(["notify", "dont_notify", "coalesce", {"set_tweak": "sound", "value": "x"}])


def test_parse_rule_body() -> None:
    assert parse_rule_body("override", {"actions": []}) == ([], None, [])
    assert parse_rule_body("content", {"pattern": "x", "actions": ["notify"]}) == (None, "x", ["notify"])
    assert parse_rule_body("room", {"actions": [], "conditions": [1]}) == (None, None, [])
    bad: list[tuple[str, dict[str, Any]]] = [
        ("content", {"actions": []}),
        ("override", {"conditions": []}),
        ("override", {"actions": [], "conditions": [{"key": "x"}]}),
        ("override", {"actions": [], "conditions": {}}),
    ]
    for kind, body in bad:
        with pytest.raises(MatrixError):
            parse_rule_body(kind, body)


@pytest.mark.parametrize(
    ("order", "rule_id", "before", "after", "expected"),
    [
        ([], "a", None, None, ["a"]),
        (["a", "b"], "n", None, None, ["n", "a", "b"]),  # new rules are the most important
        (["a", "b"], "b", None, None, ["a", "b"]),  # updates keep their place
        (["a", "b", "c"], "n", "b", None, ["a", "n", "b", "c"]),
        (["a", "b", "c"], "n", None, "b", ["a", "b", "n", "c"]),
        (["a", "b", "c"], "n", None, "c", ["a", "b", "c", "n"]),
        (["a", "b", "c"], "n", "a", "c", ["n", "a", "b", "c"]),  # before wins
        (["a", "b", "c"], "c", "a", None, ["c", "a", "b"]),  # moving an existing rule
        (["a", "b", "c"], "a", None, "c", ["b", "c", "a"]),
    ],
)
def test_place_rule(
    order: list[str], rule_id: str, before: str | None, after: str | None, expected: list[str]
) -> None:
    assert place_rule(order, rule_id, before, after) == expected


def test_place_rule_unknown_anchor() -> None:
    with pytest.raises(MatrixError) as err:
        place_rule(["a"], "n", "nope", None)
    assert (err.value.status, err.value.errcode) == (400, "M_UNKNOWN")
    with pytest.raises(MatrixError):
        place_rule(["a"], "n", ".m.rule.master", None)  # not relative to server-default rules


def test_priorities_for() -> None:
    assert priorities_for(["a", "b", "c"]) == {"a": 3, "b": 2, "c": 1}
