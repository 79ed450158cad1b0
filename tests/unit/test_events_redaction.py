"""The redaction algorithm, table-driven per room version from the spec's key lists."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.redaction import prune_event_dict
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

ALL_TOP_LEVEL = {
    "event_id": "$e",
    "type": "PLACEHOLDER",
    "room_id": "!r:x",
    "sender": "@s:x",
    "state_key": "",
    "content": {},
    "hashes": {"sha256": "h"},
    "signatures": {"x": {"ed25519:1": "s"}},
    "depth": 5,
    "prev_events": ["$p"],
    "prev_state": [],
    "auth_events": ["$a"],
    "origin": "x",
    "origin_server_ts": 1234,
    "membership": "join",
    "unsigned": {"age_ts": 1, "redacted_because": {}},
    "redacts": "$target",
    "custom_top_level": 1,
}

V1_TOP = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth",
    "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts", "membership",
}  # fmt: skip
V11_TOP = V1_TOP - {"prev_state", "origin", "membership"}


@pytest.mark.parametrize("version", list(KNOWN_ROOM_VERSIONS))
def test_top_level_keys(version: str) -> None:
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS[version], {**ALL_TOP_LEVEL, "type": "m.room.message"})
    expected = V11_TOP if int(version) >= 11 else V1_TOP
    assert set(pruned) == expected
    assert pruned["content"] == {}
    # redacts and unsigned are never kept at the top level
    assert "redacts" not in pruned and "unsigned" not in pruned


MEMBER_CONTENT = {
    "membership": "join",
    "displayname": "Alice",
    "avatar_url": "mxc://x/y",
    "join_authorised_via_users_server": "@auth:x",
    "third_party_invite": {
        "display_name": "alice",
        "signed": {"mxid": "@a:x", "token": "t", "signatures": {}},
    },
    "reason": "because",
}
CREATE_CONTENT = {
    "creator": "@s:x",
    "room_version": "9",
    "m.federate": False,
    "predecessor": {"room_id": "!o:x"},
}
JOIN_RULES_CONTENT = {
    "join_rule": "restricted",
    "allow": [{"type": "m.room_membership", "room_id": "!o:x"}],
    "x": 1,
}
POWER_LEVELS_CONTENT = {
    "ban": 50, "events": {"m.room.name": 100}, "events_default": 0, "invite": 0, "kick": 50,
    "notifications": {"room": 20}, "redact": 50, "state_default": 50, "users": {"@s:x": 100},
    "users_default": 0, "historical": 100,
}  # fmt: skip
PL_KEPT_V1 = {
    k: v for k, v in POWER_LEVELS_CONTENT.items() if k not in ("invite", "notifications", "historical")
}

# (event type, content, {versions: expected content}) — versions given as inclusive ranges.
CASES: list[tuple[str, dict[str, Any], list[tuple[range, dict[str, Any]]]]] = [
    (
        "m.room.member",
        MEMBER_CONTENT,
        [
            (range(3, 9), {"membership": "join"}),
            (range(9, 11), {"membership": "join", "join_authorised_via_users_server": "@auth:x"}),
            (
                range(11, 13),
                {
                    "membership": "join",
                    "join_authorised_via_users_server": "@auth:x",
                    "third_party_invite": {"signed": {"mxid": "@a:x", "token": "t", "signatures": {}}},
                },
            ),
        ],
    ),
    (
        "m.room.create",
        CREATE_CONTENT,
        [(range(3, 11), {"creator": "@s:x"}), (range(11, 13), CREATE_CONTENT)],
    ),
    (
        "m.room.join_rules",
        JOIN_RULES_CONTENT,
        [
            (range(3, 8), {"join_rule": "restricted"}),
            (range(8, 13), {"join_rule": "restricted", "allow": JOIN_RULES_CONTENT["allow"]}),
        ],
    ),
    (
        "m.room.power_levels",
        POWER_LEVELS_CONTENT,
        [(range(3, 11), PL_KEPT_V1), (range(11, 13), {**PL_KEPT_V1, "invite": 0})],
    ),
    (
        "m.room.history_visibility",
        {"history_visibility": "shared", "other": 1},
        [(range(3, 13), {"history_visibility": "shared"})],
    ),
    (
        "m.room.aliases",
        {"aliases": ["#a:x"], "other": 1},
        [(range(3, 6), {"aliases": ["#a:x"]}), (range(6, 13), {})],
    ),
    (
        "m.room.redaction",
        {"redacts": "$target", "reason": "spam"},
        [(range(3, 11), {}), (range(11, 13), {"redacts": "$target"})],
    ),
    (
        "m.room.message",
        {"body": "secret", "msgtype": "m.text", "membership": "join", "creator": "@s:x"},
        [(range(3, 13), {})],
    ),
    ("m.room.name", {"name": "Room"}, [(range(3, 13), {})]),
]


def _table() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    rows = []
    for event_type, content, expectations in CASES:
        covered: set[str] = set()
        for versions, expected in expectations:
            for v in versions:
                rows.append((str(v), event_type, content, expected))
                covered.add(str(v))
        assert covered == set(KNOWN_ROOM_VERSIONS), event_type  # every version has an expectation
    return rows


@pytest.mark.parametrize(("version", "event_type", "content", "expected"), _table())
def test_content_keys(
    version: str, event_type: str, content: dict[str, Any], expected: dict[str, Any]
) -> None:
    event = {**ALL_TOP_LEVEL, "type": event_type, "content": content}
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS[version], event)
    assert pruned["content"] == expected
    assert pruned["type"] == event_type


@pytest.mark.parametrize(
    ("third_party_invite", "expected"),
    [
        ({"display_name": "x"}, {"third_party_invite": {}}),  # object without signed: kept empty (Synapse)
        ("not an object", {}),
        ({"signed": "weird"}, {"third_party_invite": {"signed": "weird"}}),
    ],
)
def test_v11_third_party_invite_edge_cases(third_party_invite: Any, expected: dict[str, Any]) -> None:
    event = {
        "type": "m.room.member",
        "content": {"membership": "invite", "third_party_invite": third_party_invite},
    }
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS["11"], event)
    assert pruned["content"] == {"membership": "invite", **expected}


def test_input_is_not_modified_and_missing_content_becomes_empty() -> None:
    event: dict[str, Any] = {"type": "m.room.member", "content": dict(MEMBER_CONTENT), "sender": "@s:x"}
    before = {**event, "content": dict(MEMBER_CONTENT)}
    prune_event_dict(KNOWN_ROOM_VERSIONS["10"], event)
    assert event == before
    assert prune_event_dict(KNOWN_ROOM_VERSIONS["10"], {"type": "m.room.member"}) == {
        "type": "m.room.member",
        "content": {},
    }
    assert prune_event_dict(KNOWN_ROOM_VERSIONS["10"], {"type": "x", "content": "nope"})["content"] == {}


def test_v11_create_content_is_a_copy() -> None:
    content = {"room_version": "11", "m.federate": True}
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS["11"], {"type": "m.room.create", "content": content})
    assert pruned["content"] == content and pruned["content"] is not content


def test_redaction_is_idempotent() -> None:
    for version in KNOWN_ROOM_VERSIONS.values():
        for event_type, content, _ in CASES:
            once = prune_event_dict(version, {**ALL_TOP_LEVEL, "type": event_type, "content": content})
            assert prune_event_dict(version, once) == once
