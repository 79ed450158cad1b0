"""The server-default push rules (spec "Predefined Rules", plus the widely deployed extras).

Order matters: within a kind, earlier rules win. `.m.rule.master` is prepended before every
user-defined override rule; the other default override rules follow the user's override rules, the
default content rule follows the user's content rules and the default underride rules follow the
user's underride rules.

Besides the rules of the current spec this set keeps:

* the legacy body-based mention rules `.m.rule.contains_display_name`, `.m.rule.roomnotif` and
  `.m.rule.contains_user_name` (removed from the spec in v1.17, still served by Synapse and looked
  for by clients' notification settings). As the spec required while they were defined, they do not
  apply to events whose content has an `m.mentions` property (see the evaluator);
* the poll rules of MSC3930, under their stable ids for `m.poll.*` events and under the unstable
  `.org.matrix.msc3930.rule.*` ids for the `org.matrix.msc3381.poll.*` events today's clients send
  (Element keeps both families in sync with `.m.rule.message` and friends);
* `.im.vector.jitsi`, Synapse's rule for Jitsi widgets.

Template conditions (`pattern_type`/`value_type`, see `model`) are resolved per user.
"""

from __future__ import annotations

from typing import Any

from homeserver.push.model import USER_ID, USER_LOCALPART, PushRule

NOTIFY = "notify"
SOUND_DEFAULT: dict[str, Any] = {"set_tweak": "sound", "value": "default"}
SOUND_RING: dict[str, Any] = {"set_tweak": "sound", "value": "ring"}
HIGHLIGHT: dict[str, Any] = {"set_tweak": "highlight"}

# Rule ids whose match is skipped for events that carry `content["m.mentions"]` (intentional
# mentions, spec v1.7): the legacy mention rules.
LEGACY_MENTION_RULES = frozenset(
    {".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"}
)


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _type(event_type: str) -> dict[str, Any]:
    return _match("type", event_type)


def _one_to_one() -> dict[str, Any]:
    return {"kind": "room_member_count", "is": "2"}


def _override(rule_id: str, conditions: list[dict[str, Any]], actions: list[Any], **kw: Any) -> PushRule:
    return PushRule("override", rule_id, actions, conditions=conditions, default=True, **kw)


def _underride(rule_id: str, conditions: list[dict[str, Any]], actions: list[Any]) -> PushRule:
    return PushRule("underride", rule_id, actions, conditions=conditions, default=True)


MASTER = _override(".m.rule.master", [], [], enabled=False)

DEFAULT_OVERRIDE: tuple[PushRule, ...] = (
    _override(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
    _override(
        ".m.rule.invite_for_me",
        [
            _type("m.room.member"),
            _match("content.membership", "invite"),
            {"kind": "event_match", "key": "state_key", "pattern_type": USER_ID},
        ],
        [NOTIFY, SOUND_DEFAULT],
    ),
    _override(".m.rule.member_event", [_type("m.room.member")], []),
    _override(
        ".m.rule.is_user_mention",
        [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value_type": USER_ID}],
        [NOTIFY, SOUND_DEFAULT, HIGHLIGHT],
    ),
    _override(
        ".m.rule.contains_display_name",
        [{"kind": "contains_display_name"}],
        [NOTIFY, SOUND_DEFAULT, HIGHLIGHT],
    ),
    _override(
        ".m.rule.is_room_mention",
        [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ],
        [NOTIFY, HIGHLIGHT],
    ),
    _override(
        ".m.rule.roomnotif",
        [
            {"kind": "sender_notification_permission", "key": "room"},
            _match("content.body", "@room"),
        ],
        [NOTIFY, HIGHLIGHT],
    ),
    _override(".m.rule.tombstone", [_type("m.room.tombstone"), _match("state_key", "")], [NOTIFY, HIGHLIGHT]),
    _override(".m.rule.reaction", [_type("m.reaction")], []),
    _override(".m.rule.room.server_acl", [_type("m.room.server_acl"), _match("state_key", "")], []),
    _override(
        ".m.rule.suppress_edits",
        [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
        [],
    ),
    _override(".m.rule.poll_response", [_type("m.poll.response")], []),
    _override(".org.matrix.msc3930.rule.poll_response", [_type("org.matrix.msc3381.poll.response")], []),
)

DEFAULT_CONTENT: tuple[PushRule, ...] = (
    PushRule(
        "content",
        ".m.rule.contains_user_name",
        [NOTIFY, SOUND_DEFAULT, HIGHLIGHT],
        pattern_type=USER_LOCALPART,
        default=True,
    ),
)

DEFAULT_UNDERRIDE: tuple[PushRule, ...] = (
    _underride(".m.rule.call", [_type("m.call.invite")], [NOTIFY, SOUND_RING]),
    _underride(
        ".m.rule.encrypted_room_one_to_one",
        [_one_to_one(), _type("m.room.encrypted")],
        [NOTIFY, SOUND_DEFAULT],
    ),
    _underride(".m.rule.room_one_to_one", [_one_to_one(), _type("m.room.message")], [NOTIFY, SOUND_DEFAULT]),
    _underride(".m.rule.message", [_type("m.room.message")], [NOTIFY]),
    _underride(".m.rule.encrypted", [_type("m.room.encrypted")], [NOTIFY]),
    _underride(
        ".m.rule.poll_start_one_to_one", [_one_to_one(), _type("m.poll.start")], [NOTIFY, SOUND_DEFAULT]
    ),
    _underride(".m.rule.poll_start", [_type("m.poll.start")], [NOTIFY]),
    _underride(".m.rule.poll_end_one_to_one", [_one_to_one(), _type("m.poll.end")], [NOTIFY, SOUND_DEFAULT]),
    _underride(".m.rule.poll_end", [_type("m.poll.end")], [NOTIFY]),
    _underride(
        ".org.matrix.msc3930.rule.poll_start_one_to_one",
        [_one_to_one(), _type("org.matrix.msc3381.poll.start")],
        [NOTIFY, SOUND_DEFAULT],
    ),
    _underride(".org.matrix.msc3930.rule.poll_start", [_type("org.matrix.msc3381.poll.start")], [NOTIFY]),
    _underride(
        ".org.matrix.msc3930.rule.poll_end_one_to_one",
        [_one_to_one(), _type("org.matrix.msc3381.poll.end")],
        [NOTIFY, SOUND_DEFAULT],
    ),
    _underride(".org.matrix.msc3930.rule.poll_end", [_type("org.matrix.msc3381.poll.end")], [NOTIFY]),
    _underride(
        ".im.vector.jitsi",
        [_type("im.vector.modular.widgets"), _match("content.type", "jitsi"), _match("state_key", "*")],
        [NOTIFY],
    ),
)

ALL_DEFAULT_RULES: tuple[PushRule, ...] = (MASTER, *DEFAULT_OVERRIDE, *DEFAULT_CONTENT, *DEFAULT_UNDERRIDE)

DEFAULTS_BY_ID: dict[tuple[str, str], PushRule] = {(r.kind, r.rule_id): r for r in ALL_DEFAULT_RULES}


def default_rule(kind: str, rule_id: str) -> PushRule | None:
    return DEFAULTS_BY_ID.get((kind, rule_id))
