"""Push rules, black-box.

Endpoints: GET /pushrules/, GET /pushrules/global/, GET/PUT/DELETE /pushrules/global/{kind}/{ruleId},
GET/PUT .../enabled and .../actions, and the m.push_rules account data event in /sync.
Every response is checked against pushrules.yaml; every request body the tests mean to be valid
against its request schema. No sleeps: waiting is long-polling /sync.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from .client import V3, q
from .harness import Homeserver, SyncStream, User, assert_api_error
from .spec_schema import (
    assert_error,
    assert_request_matches_spec,
    assert_response_matches_spec,
    spec_dir,
    validate,
)

API = "pushrules.yaml"
RULESET = "/pushrules/"
GLOBAL = "/pushrules/global/"
RULE = "/pushrules/global/{kind}/{ruleId}"
ENABLED = "/pushrules/global/{kind}/{ruleId}/enabled"
ACTIONS = "/pushrules/global/{kind}/{ruleId}/actions"

KINDS = ("override", "content", "room", "sender", "underride")
BODY_MATCH = [{"kind": "event_match", "key": "content.body", "pattern": "compat*"}]

# The spec's 400 example for PUT .../{ruleId} is M_UNKNOWN ("before/after rule not found"); the
# more specific codes are what a validating server naturally answers. Both are accepted.
INVALID = ("M_INVALID_PARAM", "M_UNKNOWN", "M_BAD_JSON")
MISSING = ("M_MISSING_PARAM", "M_BAD_JSON", "M_UNKNOWN")


def rule_path(kind: str, rule_id: str, *tail: str) -> str:
    return "/".join([f"{V3}/pushrules/global", q(kind), q(rule_id), *tail])


def get_ruleset(user: User) -> dict[str, Any]:
    body = assert_response_matches_spec(user.client.get(f"{V3}/pushrules/"), API, RULESET)
    ruleset: dict[str, Any] = body["global"]
    return ruleset


def ids(ruleset: dict[str, Any], kind: str) -> list[str]:
    return [rule["rule_id"] for rule in ruleset.get(kind, [])]


def user_defined(ruleset: dict[str, Any], kind: str) -> list[str]:
    return [rule_id for rule_id in ids(ruleset, kind) if not rule_id.startswith(".")]


def put_rule(user: User, kind: str, rule_id: str, body: dict[str, Any], **params: str) -> None:
    assert_request_matches_spec(API, RULE, "PUT", body)
    resp = user.client.put(rule_path(kind, rule_id), body, params=params or None)
    assert assert_response_matches_spec(resp, API, RULE) == {}


def get_rule(user: User, kind: str, rule_id: str) -> dict[str, Any]:
    body: dict[str, Any] = assert_response_matches_spec(user.client.get(rule_path(kind, rule_id)), API, RULE)
    return body


def new_rule_id() -> str:
    return f"compat_{secrets.token_hex(4)}"


def canonical(items: list[Any]) -> list[str]:
    return sorted(json.dumps(item, sort_keys=True) for item in items)


def normalised_actions(actions: list[Any]) -> list[str]:
    """Actions as an unordered set; ``{"set_tweak": "highlight", "value": false}`` is dropped, since
    a missing highlight tweak is defined to mean false (Synapse spells it out, the spec omits it)."""
    kept = [a for a in actions if a != {"set_tweak": "highlight", "value": False}]
    return canonical(kept)


def assert_rule_is(rule: dict[str, Any], expected: dict[str, Any]) -> None:
    assert rule["rule_id"] == expected["rule_id"], rule
    assert rule["default"] is expected["default"], rule
    assert rule["enabled"] is expected["enabled"], rule
    assert normalised_actions(rule["actions"]) == normalised_actions(expected["actions"]), rule
    if "conditions" in expected:
        assert canonical(rule.get("conditions", [])) == canonical(expected["conditions"]), rule


def push_rules_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    events = [
        e for e in (body.get("account_data") or {}).get("events", []) if e.get("type") == "m.push_rules"
    ]
    ref = (spec_dir() / "data" / "event-schemas" / "schema" / "m.push_rules.yaml").resolve().as_uri() + "#"
    for event in events:
        validate(ref, event, "m.push_rules event")
    return events


def is_subsequence(wanted: list[str], have: list[str]) -> bool:
    it = iter(have)
    return all(rule_id in it for rule_id in wanted)


# --------------------------------------------------------------------------- the default ruleset


DEFAULT_OVERRIDE = [
    ".m.rule.master",
    ".m.rule.suppress_notices",
    ".m.rule.invite_for_me",
    ".m.rule.member_event",
    ".m.rule.is_user_mention",
    ".m.rule.is_room_mention",
    ".m.rule.tombstone",
    ".m.rule.reaction",
    ".m.rule.room.server_acl",
    ".m.rule.suppress_edits",
]
DEFAULT_UNDERRIDE = [
    ".m.rule.call",
    ".m.rule.encrypted_room_one_to_one",
    ".m.rule.room_one_to_one",
    ".m.rule.message",
    ".m.rule.encrypted",
]


def spec_default_rules(user_id: str) -> dict[str, dict[str, Any]]:
    """The definitions from the spec's "Predefined Rules" section that these tests compare exactly."""

    def rule(rule_id: str, conditions: list[Any], actions: list[Any], enabled: bool = True) -> dict[str, Any]:
        return {
            "rule_id": rule_id,
            "default": True,
            "enabled": enabled,
            "conditions": conditions,
            "actions": actions,
        }

    def match(key: str, pattern: str) -> dict[str, Any]:
        return {"kind": "event_match", "key": key, "pattern": pattern}

    sound = {"set_tweak": "sound", "value": "default"}
    highlight = {"set_tweak": "highlight"}
    rules = [
        rule(".m.rule.master", [], [], enabled=False),
        rule(".m.rule.suppress_notices", [match("content.msgtype", "m.notice")], []),
        rule(
            ".m.rule.invite_for_me",
            [
                match("type", "m.room.member"),
                match("content.membership", "invite"),
                match("state_key", user_id),
            ],
            ["notify", sound],
        ),
        rule(".m.rule.member_event", [match("type", "m.room.member")], []),
        rule(
            ".m.rule.is_user_mention",
            [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user_id}],
            ["notify", sound, highlight],
        ),
        rule(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", highlight],
        ),
        rule(
            ".m.rule.tombstone",
            [match("type", "m.room.tombstone"), match("state_key", "")],
            ["notify", highlight],
        ),
        rule(".m.rule.reaction", [match("type", "m.reaction")], []),
        rule(
            ".m.rule.call",
            [match("type", "m.call.invite")],
            ["notify", {"set_tweak": "sound", "value": "ring"}],
        ),
        rule(
            ".m.rule.room_one_to_one",
            [{"kind": "room_member_count", "is": "2"}, match("type", "m.room.message")],
            ["notify", sound],
        ),
        rule(".m.rule.message", [match("type", "m.room.message")], ["notify"]),
        rule(".m.rule.encrypted", [match("type", "m.room.encrypted")], ["notify"]),
    ]
    return {r["rule_id"]: r for r in rules}


def test_default_ruleset(user: User) -> None:
    ruleset = get_ruleset(user)
    # The default rules, in the spec's priority order (servers may have extra rules in between).
    assert is_subsequence(DEFAULT_OVERRIDE, ids(ruleset, "override")), ids(ruleset, "override")
    assert is_subsequence(DEFAULT_UNDERRIDE, ids(ruleset, "underride")), ids(ruleset, "underride")
    assert ids(ruleset, "override")[0] == ".m.rule.master"
    # A fresh user has no rules of their own.
    for kind in KINDS:
        assert user_defined(ruleset, kind) == [], (kind, ruleset.get(kind))
        for rule in ruleset.get(kind, []):
            assert rule["default"] is True, rule

    by_id = {rule["rule_id"]: rule for kind in ("override", "underride") for rule in ruleset.get(kind, [])}
    for rule_id, expected in spec_default_rules(user.user_id).items():
        assert_rule_is(by_id[rule_id], expected)
    for rule_id in DEFAULT_OVERRIDE[1:] + DEFAULT_UNDERRIDE:
        assert by_id[rule_id]["enabled"] is True, by_id[rule_id]


def test_global_ruleset_and_single_default_rules(user: User) -> None:
    ruleset = get_ruleset(user)
    body = assert_response_matches_spec(user.client.get(f"{V3}/pushrules/global/"), API, GLOBAL)
    for kind in KINDS:
        assert ids(body, kind) == ids(ruleset, kind), kind
    for kind, rule_id in (("override", ".m.rule.master"), ("underride", ".m.rule.message")):
        rule = get_rule(user, kind, rule_id)
        assert rule == next(r for r in ruleset[kind] if r["rule_id"] == rule_id)
        resp = user.client.get(rule_path(kind, rule_id, "enabled"))
        assert assert_response_matches_spec(resp, API, ENABLED) == {"enabled": rule["enabled"]}
        resp = user.client.get(rule_path(kind, rule_id, "actions"))
        assert assert_response_matches_spec(resp, API, ACTIONS) == {"actions": rule["actions"]}


def test_push_rules_need_a_token(hs: Homeserver) -> None:
    assert_error(hs.client().get(f"{V3}/pushrules/"), 401, "M_MISSING_TOKEN")


# --------------------------------------------------------------------------- user-defined rules


def test_put_get_delete_override_rule(user: User) -> None:
    rule_id = new_rule_id()
    actions = ["notify", {"set_tweak": "sound", "value": "compat.wav"}, {"set_tweak": "highlight"}]
    put_rule(user, "override", rule_id, {"actions": actions, "conditions": BODY_MATCH})

    rule = get_rule(user, "override", rule_id)
    assert rule == {
        "rule_id": rule_id,
        "default": False,
        "enabled": True,  # "When creating push rules, they MUST be enabled by default."
        "actions": actions,
        "conditions": BODY_MATCH,
    }
    # User-defined rules come before the server-default ones of their kind, except .m.rule.master.
    override = ids(get_ruleset(user), "override")
    assert override[:2] == [".m.rule.master", rule_id], override

    # Updating replaces the rule's actions and conditions.
    conditions = [{"kind": "room_member_count", "is": ">=3"}]
    put_rule(user, "override", rule_id, {"actions": [], "conditions": conditions})
    rule = get_rule(user, "override", rule_id)
    assert (rule["actions"], rule["conditions"], rule["default"]) == ([], conditions, False)
    assert ids(get_ruleset(user), "override").count(rule_id) == 1

    resp = user.client.delete(rule_path("override", rule_id))
    assert assert_response_matches_spec(resp, API, RULE) == {}
    assert_api_error(user.client.get(rule_path("override", rule_id)), API, RULE, 404, "M_NOT_FOUND")
    assert_api_error(user.client.delete(rule_path("override", rule_id)), API, RULE, 404, "M_NOT_FOUND")
    assert rule_id not in ids(get_ruleset(user), "override")


def test_underride_content_room_and_sender_rules(hs: Homeserver, user: User) -> None:
    underride, content = new_rule_id(), new_rule_id()
    room_id, sender = f"!compat{secrets.token_hex(4)}:{user.server_name}", hs.register().user_id
    put_rule(user, "underride", underride, {"actions": ["notify"], "conditions": BODY_MATCH})
    put_rule(user, "content", content, {"actions": ["notify"], "pattern": "cake*lie"})
    put_rule(user, "room", room_id, {"actions": []})
    put_rule(user, "sender", sender, {"actions": ["notify", {"set_tweak": "sound", "value": "x"}]})

    assert get_rule(user, "content", content)["pattern"] == "cake*lie"
    assert get_rule(user, "room", room_id)["actions"] == []
    assert get_rule(user, "sender", sender)["actions"] == ["notify", {"set_tweak": "sound", "value": "x"}]
    assert get_rule(user, "underride", underride)["conditions"] == BODY_MATCH

    ruleset = get_ruleset(user)
    assert ids(ruleset, "underride")[0] == underride  # before .m.rule.call and the other defaults
    assert user_defined(ruleset, "content") == [content]
    assert ids(ruleset, "room") == [room_id]
    assert ids(ruleset, "sender") == [sender]
    for kind, rule_id in (
        ("underride", underride),
        ("content", content),
        ("room", room_id),
        ("sender", sender),
    ):
        resp = user.client.delete(rule_path(kind, rule_id))
        assert assert_response_matches_spec(resp, API, RULE) == {}
    ruleset = get_ruleset(user)
    for kind in KINDS:
        assert user_defined(ruleset, kind) == [], kind


def test_override_rule_without_conditions(hs: Homeserver, user: User) -> None:
    """``conditions`` is optional ("A rule with no conditions always matches")."""
    rule_id = new_rule_id()
    body = {"actions": ["notify"]}
    assert_request_matches_spec(API, RULE, "PUT", body)
    resp = user.client.put(rule_path("override", rule_id), body)
    if hs.is_synapse and resp.status == 400:
        # Synapse requires "conditions" on override/underride rules (400 M_UNKNOWN "Missing
        # 'conditions'"); the request schema makes it optional.
        assert_error(resp, 400, "M_UNKNOWN")
        return
    assert assert_response_matches_spec(resp, API, RULE) == {}
    rule = get_rule(user, "override", rule_id)
    assert rule.get("conditions", []) == []
    assert rule["actions"] == ["notify"]


def test_new_rules_go_first_and_before_after_place_them(user: User) -> None:
    a, b, c, d, e = (new_rule_id() for _ in range(5))
    body = {"actions": ["notify"], "conditions": BODY_MATCH}
    put_rule(user, "override", a, body)
    put_rule(user, "override", b, body)  # a new rule is the most important user-defined rule
    assert user_defined(get_ruleset(user), "override") == [b, a]
    put_rule(user, "override", c, body, after=a)
    assert user_defined(get_ruleset(user), "override") == [b, a, c]
    put_rule(user, "override", d, body, before=b)
    assert user_defined(get_ruleset(user), "override") == [d, b, a, c]
    # With both, the rule becomes the next most important one relative to `before`.
    put_rule(user, "override", e, body, before=a, after=d)
    assert user_defined(get_ruleset(user), "override") == [d, b, e, a, c]
    assert ids(get_ruleset(user), "override")[0] == ".m.rule.master"


def test_before_after_errors(user: User) -> None:
    existing, rule_id = new_rule_id(), new_rule_id()
    body = {"actions": ["notify"], "conditions": BODY_MATCH}
    put_rule(user, "override", existing, body)
    # An unknown rule, a rule of another kind, and a server-default rule ("It is not possible to
    # add a rule relative to a predefined server rule") are all rejected.
    for params in (
        {"before": "compat_no_such_rule"},
        {"after": "compat_no_such_rule"},
        {"before": ".m.rule.master"},
        {"after": ".m.rule.suppress_notices"},
    ):
        resp = user.client.put(rule_path("override", rule_id), body, params=params)
        assert_api_error(resp, API, RULE, 400, ("M_UNKNOWN", "M_INVALID_PARAM"))
    put_rule(user, "content", f"{rule_id}_c", {"actions": [], "pattern": "x"})
    resp = user.client.put(rule_path("override", rule_id), body, params={"before": f"{rule_id}_c"})
    assert_api_error(resp, API, RULE, 400, ("M_UNKNOWN", "M_INVALID_PARAM"))
    assert_api_error(user.client.get(rule_path("override", rule_id)), API, RULE, 404, "M_NOT_FOUND")
    assert user_defined(get_ruleset(user), "override") == [existing]


# --------------------------------------------------------------------------- enabled and actions


def test_enabled_subresource(user: User) -> None:
    rule_id = new_rule_id()
    put_rule(user, "override", rule_id, {"actions": ["notify"], "conditions": BODY_MATCH})

    def enabled(kind: str, rid: str) -> bool:
        body = assert_response_matches_spec(user.client.get(rule_path(kind, rid, "enabled")), API, ENABLED)
        assert set(body) == {"enabled"}
        return bool(body["enabled"])

    def set_enabled(kind: str, rid: str, value: bool) -> None:
        body = {"enabled": value}
        assert_request_matches_spec(API, ENABLED, "PUT", body)
        resp = user.client.put(rule_path(kind, rid, "enabled"), body)
        assert assert_response_matches_spec(resp, API, ENABLED) == {}

    assert enabled("override", rule_id) is True
    set_enabled("override", rule_id, False)
    assert enabled("override", rule_id) is False
    assert get_rule(user, "override", rule_id)["enabled"] is False
    assert next(r for r in get_ruleset(user)["override"] if r["rule_id"] == rule_id)["enabled"] is False
    set_enabled("override", rule_id, True)
    assert enabled("override", rule_id) is True

    # Server-default rules can be switched too (.m.rule.master turns off all notifications).
    set_enabled("override", ".m.rule.master", True)
    assert enabled("override", ".m.rule.master") is True
    assert get_rule(user, "override", ".m.rule.master")["default"] is True
    set_enabled("underride", ".m.rule.message", False)
    assert enabled("underride", ".m.rule.message") is False
    set_enabled("override", ".m.rule.master", False)
    assert enabled("override", ".m.rule.master") is False

    for bad in ({"enabled": "yes"}, {"enabled": 1}, {}):
        resp = user.client.put(rule_path("override", rule_id, "enabled"), bad)
        assert_api_error(resp, API, ENABLED, 400, INVALID + MISSING)
    assert enabled("override", rule_id) is True


def test_actions_subresource(user: User) -> None:
    rule_id = new_rule_id()
    put_rule(user, "override", rule_id, {"actions": ["notify"], "conditions": BODY_MATCH})

    def actions(kind: str, rid: str) -> list[Any]:
        body = assert_response_matches_spec(user.client.get(rule_path(kind, rid, "actions")), API, ACTIONS)
        assert set(body) == {"actions"}
        return list(body["actions"])

    def set_actions(kind: str, rid: str, value: list[Any]) -> None:
        body = {"actions": value}
        assert_request_matches_spec(API, ACTIONS, "PUT", body)
        resp = user.client.put(rule_path(kind, rid, "actions"), body)
        assert assert_response_matches_spec(resp, API, ACTIONS) == {}

    assert actions("override", rule_id) == ["notify"]
    new = ["notify", {"set_tweak": "sound", "value": "bing"}, {"set_tweak": "highlight", "value": True}]
    set_actions("override", rule_id, new)
    assert actions("override", rule_id) == new
    rule = get_rule(user, "override", rule_id)
    assert (rule["actions"], rule["conditions"], rule["enabled"]) == (new, BODY_MATCH, True)

    # "This can be used to change the actions of builtin rules."
    set_actions("underride", ".m.rule.message", [])
    assert actions("underride", ".m.rule.message") == []
    rule = get_rule(user, "underride", ".m.rule.message")
    assert rule["default"] is True
    assert rule["conditions"] == [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}]

    for bad in ({"actions": "notify"}, {"actions": ["compat_no_such_action"]}, {}):
        resp = user.client.put(rule_path("override", rule_id, "actions"), bad)
        assert_api_error(resp, API, ACTIONS, 400, INVALID + MISSING)
    assert actions("override", rule_id) == new


# --------------------------------------------------------------------------- errors


def test_unknown_rule_is_404(user: User) -> None:
    for kind, rule_id in (("override", "compat_no_such_rule"), ("underride", ".m.rule.compat_nonexistent")):
        assert_api_error(user.client.get(rule_path(kind, rule_id)), API, RULE, 404, "M_NOT_FOUND")
        assert_api_error(user.client.delete(rule_path(kind, rule_id)), API, RULE, 404, "M_NOT_FOUND")
        resp = user.client.get(rule_path(kind, rule_id, "enabled"))
        assert_api_error(resp, API, ENABLED, 404, "M_NOT_FOUND")
        resp = user.client.put(rule_path(kind, rule_id, "enabled"), {"enabled": False})
        assert_api_error(resp, API, ENABLED, 404, "M_NOT_FOUND")
        resp = user.client.get(rule_path(kind, rule_id, "actions"))
        assert_api_error(resp, API, ACTIONS, 404, "M_NOT_FOUND")
        resp = user.client.put(rule_path(kind, rule_id, "actions"), {"actions": []})
        assert_api_error(resp, API, ACTIONS, 404, "M_NOT_FOUND")
    # A rule of one kind is not found under another.
    rule_id = new_rule_id()
    put_rule(user, "override", rule_id, {"actions": [], "conditions": BODY_MATCH})
    assert_api_error(user.client.get(rule_path("underride", rule_id)), API, RULE, 404, "M_NOT_FOUND")


def test_rules_are_per_user(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    rule_id = new_rule_id()
    put_rule(alice, "override", rule_id, {"actions": ["notify"], "conditions": BODY_MATCH})
    assert_api_error(bob.client.get(rule_path("override", rule_id)), API, RULE, 404, "M_NOT_FOUND")
    assert_api_error(bob.client.delete(rule_path("override", rule_id)), API, RULE, 404, "M_NOT_FOUND")
    assert rule_id not in ids(get_ruleset(bob), "override")
    assert rule_id in ids(get_ruleset(alice), "override")


def test_server_default_rules_cannot_be_deleted_or_replaced(user: User) -> None:
    before = get_ruleset(user)
    for kind, rule_id in (("override", ".m.rule.master"), ("underride", ".m.rule.message")):
        # The spec gives no status for this; Synapse answers 404 M_NOT_FOUND (it only deletes
        # user-defined rules), we 400 M_INVALID_PARAM. Either way the rule stays.
        resp = user.client.delete(rule_path(kind, rule_id))
        assert_error(resp, (400, 403, 404), ("M_INVALID_PARAM", "M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN"))
        # "If the string starts with a dot ("."), the request MUST be rejected."
        body = {"actions": ["notify"], "conditions": BODY_MATCH}
        assert_api_error(user.client.put(rule_path(kind, rule_id), body), API, RULE, 400, INVALID)
    resp = user.client.put(rule_path("override", ".compat.dotted"), {"actions": [], "conditions": BODY_MATCH})
    assert_api_error(resp, API, RULE, 400, INVALID)
    after = get_ruleset(user)
    for kind in KINDS:
        assert after.get(kind) == before.get(kind), kind


def test_slashes_in_rule_ids_are_rejected(user: User) -> None:
    body = {"actions": ["notify"], "conditions": BODY_MATCH}
    for rule_id in ("compat\\back", "compat/slash"):
        resp = user.client.put(rule_path("override", rule_id), body)
        # Synapse's router answers an encoded slash with 400 M_UNRECOGNIZED; a backslash with
        # 400 M_UNKNOWN. The spec only says the request is rejected.
        assert_error(resp, 400, (*INVALID, "M_UNRECOGNIZED"))
    assert user_defined(get_ruleset(user), "override") == []


def test_unknown_kind(hs: Homeserver, user: User) -> None:
    # The kind is an enum in the path; the spec documents no status for another value. We answer
    # 400 M_INVALID_PARAM; Synapse 400 M_UNRECOGNIZED (GET), 400 M_UNKNOWN (PUT) and 404 M_NOT_FOUND
    # (DELETE: no such rule), which are accepted too.
    codes = ("M_INVALID_PARAM", "M_UNRECOGNIZED", "M_NOT_FOUND", *(("M_UNKNOWN",) if hs.is_synapse else ()))
    path = rule_path("compat_kind", "rule")
    assert_error(user.client.get(path), (400, 404), codes)
    assert_error(user.client.put(path, {"actions": ["notify"]}), (400, 404), codes)
    assert_error(user.client.delete(path), (400, 404), codes)
    assert_error(user.client.get(rule_path("compat_kind", "rule", "enabled")), (400, 404), codes)
    assert_error(user.client.get(rule_path("compat_kind", "rule", "actions")), (400, 404), codes)


def test_bad_rule_bodies(hs: Homeserver, user: User) -> None:
    rule_id = new_rule_id()
    for body in (
        {"actions": "notify", "conditions": BODY_MATCH},  # not a list
        {"actions": ["compat_no_such_action"], "conditions": BODY_MATCH},
        {"actions": [7], "conditions": BODY_MATCH},
        {"actions": ["notify"], "conditions": "content.body"},  # not a list
    ):
        resp = user.client.put(rule_path("override", rule_id), body)
        assert_api_error(resp, API, RULE, 400, INVALID)
    resp = user.client.put(rule_path("override", rule_id), {"conditions": BODY_MATCH})  # actions is required
    assert_api_error(resp, API, RULE, 400, MISSING)
    # Content rules need their pattern.
    resp = user.client.put(rule_path("content", rule_id), {"actions": ["notify"]})
    assert_api_error(resp, API, RULE, 400, MISSING)
    # A body that is not an object; Synapse answers 400 M_UNKNOWN ("Missing 'conditions'").
    not_object = ("M_BAD_JSON", "M_NOT_JSON", *(("M_UNKNOWN",) if hs.is_synapse else ()))
    assert_error(user.client.put(rule_path("override", rule_id), [1]), 400, not_object)
    resp = user.client.put(rule_path("override", rule_id), data=b"{not json")
    assert_error(resp, 400, ("M_NOT_JSON", "M_BAD_JSON"))
    for kind in ("override", "content"):
        assert_api_error(user.client.get(rule_path(kind, rule_id)), API, RULE, 404, "M_NOT_FOUND")


# --------------------------------------------------------------------------- m.push_rules in /sync


def test_push_rules_change_reaches_sync(user: User) -> None:
    stream = SyncStream(user)
    stream.sync()
    rule_id = new_rule_id()
    put_rule(user, "override", rule_id, {"actions": ["notify"], "conditions": BODY_MATCH})

    def with_rule(body: dict[str, Any]) -> dict[str, Any] | None:
        for event in push_rules_events(body):
            for rule in event["content"]["global"].get("override", []):
                if rule["rule_id"] == rule_id:
                    return dict(event["content"]["global"])
        return None

    ruleset = stream.until(with_rule)
    assert ids(ruleset, "override") == ids(get_ruleset(user), "override")

    resp = user.client.put(rule_path("override", rule_id, "enabled"), {"enabled": False})
    assert_response_matches_spec(resp, API, ENABLED)

    def disabled(body: dict[str, Any]) -> bool:
        for event in push_rules_events(body):
            for rule in event["content"]["global"].get("override", []):
                if rule["rule_id"] == rule_id and rule["enabled"] is False:
                    return True
        return False

    stream.until(disabled)

    assert_response_matches_spec(user.client.delete(rule_path("override", rule_id)), API, RULE)

    def gone(body: dict[str, Any]) -> bool:
        events = push_rules_events(body)
        return bool(events) and rule_id not in ids(events[-1]["content"]["global"], "override")

    stream.until(gone)
