"""The user's push rule model: validating client input, ordering user rules, and merging the user's
rules and overrides of server-default rules into the effective rule set.

Storage keeps two things per user (see `schema/0006_push_rules.sql`):

* user-defined rules: kind, rule_id, priority (higher is more important within the kind),
  conditions/pattern, actions, enabled;
* settings of server-default rules: `enabled` and/or `actions` a user changed (NULL = default).

Everything here is pure and works on any objects with those attributes (the store's rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from homeserver.core.errors import MatrixError, invalid_param, missing_param
from homeserver.push.default_rules import (
    DEFAULT_CONTENT,
    DEFAULT_OVERRIDE,
    DEFAULT_UNDERRIDE,
    DEFAULTS_BY_ID,
    MASTER,
    default_rule,
)
from homeserver.push.model import KINDS, USER_LOCALPART, PushRule

__all__ = [
    "KINDS",
    "PushRule",
    "StoredRule",
    "StoredSetting",
    "check_actions",
    "check_kind",
    "check_new_rule_id",
    "default_rule",
    "effective_rules",
    "find_rule",
    "is_default_rule",
    "parse_rule_body",
    "place_rule",
    "priorities_for",
    "rule_for_client",
    "ruleset_for_client",
]

# Actions a client may send: `notify`, the historical `dont_notify`/`coalesce` (kept as sent,
# ignored when evaluating), and `set_tweak` objects.
_SIMPLE_ACTIONS = frozenset({"notify", "dont_notify", "coalesce"})


class StoredRule(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def conditions(self) -> list[dict[str, Any]] | None: ...
    @property
    def pattern(self) -> str | None: ...
    @property
    def actions(self) -> list[Any]: ...
    @property
    def enabled(self) -> bool: ...


class StoredSetting(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def enabled(self) -> bool | None: ...
    @property
    def actions(self) -> list[Any] | None: ...


# -- validation of client input -----------------------------------------------------------------


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind: {kind}")
    return kind


def check_new_rule_id(kind: str, rule_id: str) -> None:
    """Ids a client may create: not empty, no leading dot (server-default), no slashes."""
    if not rule_id:
        raise invalid_param("rule_id may not be empty")
    if rule_id.startswith("."):
        raise invalid_param("rule_ids starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise invalid_param("rule_id may not contain slashes or backslashes")


def check_actions(actions: Any) -> list[Any]:
    if not isinstance(actions, list):
        raise invalid_param("actions must be a list")
    for action in actions:
        if isinstance(action, str):
            if action not in _SIMPLE_ACTIONS:
                raise invalid_param(f"Unrecognised action: {action}")
        elif isinstance(action, dict):
            if not isinstance(action.get("set_tweak"), str):
                raise invalid_param("Action objects must have a string 'set_tweak'")
        else:
            raise invalid_param(f"Unrecognised action: {action!r}")
    return actions


def _check_conditions(conditions: Any) -> list[dict[str, Any]]:
    if not isinstance(conditions, list):
        raise invalid_param("conditions must be a list")
    for condition in conditions:
        if not isinstance(condition, dict) or not isinstance(condition.get("kind"), str):
            raise invalid_param("Each condition must be an object with a string 'kind'")
    return conditions


def parse_rule_body(
    kind: str, body: Mapping[str, Any]
) -> tuple[list[dict[str, Any]] | None, str | None, list[Any]]:
    """`(conditions, pattern, actions)` of a PUT body for a rule of `kind`."""
    if "actions" not in body:
        raise missing_param("Missing 'actions'")
    actions = check_actions(body["actions"])
    conditions = None
    pattern = None
    if kind in ("override", "underride"):
        conditions = _check_conditions(body.get("conditions", []))
    elif kind == "content":
        pattern = body.get("pattern")
        if pattern is None:
            raise missing_param("Content rules need a 'pattern'")
        if not isinstance(pattern, str):
            raise invalid_param("'pattern' must be a string")
    return conditions, pattern, actions


# -- ordering of user rules ---------------------------------------------------------------------


def place_rule(order: list[str], rule_id: str, before: str | None, after: str | None) -> list[str]:
    """The new order (most important first) of one kind's user rules after a PUT of `rule_id`.

    A new rule without `before`/`after` becomes the most important; an existing one keeps its place.
    `before` wins when both are given. Anchors must be user-defined rules of the same kind.
    """
    if not before and not after:
        return order if rule_id in order else [rule_id, *order]
    anchor = before or after
    assert anchor is not None
    if anchor == rule_id:
        raise invalid_param("A rule cannot be placed relative to itself")
    rest = [r for r in order if r != rule_id]
    if anchor not in rest:
        raise MatrixError(400, "M_UNKNOWN", f"before/after rule not found: {anchor}")
    index = rest.index(anchor)
    rest.insert(index if before else index + 1, rule_id)
    return rest


def priorities_for(order: list[str]) -> dict[str, int]:
    """Dense priorities for an order, most important highest."""
    n = len(order)
    return {rule_id: n - i for i, rule_id in enumerate(order)}


# -- the effective rule set -----------------------------------------------------------------------


def _user_rule(row: StoredRule) -> PushRule:
    kind = row.kind
    return PushRule(
        kind,
        row.rule_id,
        row.actions,
        conditions=(row.conditions or []) if kind in ("override", "underride") else None,
        pattern=row.pattern if kind == "content" else None,
        default=False,
        enabled=bool(row.enabled),
    )


def effective_rules(
    user_rules: Iterable[StoredRule] = (), settings: Iterable[StoredSetting] = ()
) -> list[PushRule]:
    """All of a user's rules in evaluation order, disabled ones included."""
    overrides = {(s.kind, s.rule_id): s for s in settings}
    by_kind: dict[str, list[StoredRule]] = {kind: [] for kind in KINDS}
    for row in user_rules:
        if row.kind in by_kind:
            by_kind[row.kind].append(row)

    def user(kind: str) -> list[PushRule]:
        rows = sorted(by_kind[kind], key=lambda r: (-r.priority, r.rule_id))
        return [_user_rule(r) for r in rows]

    def defaults(rules: Iterable[PushRule]) -> list[PushRule]:
        out = []
        for rule in rules:
            s = overrides.get((rule.kind, rule.rule_id))
            out.append(rule if s is None else rule.with_settings(enabled=s.enabled, actions=s.actions))
        return out

    return [
        *defaults((MASTER,)),
        *user("override"),
        *defaults(DEFAULT_OVERRIDE),
        *user("content"),
        *defaults(DEFAULT_CONTENT),
        *user("room"),
        *user("sender"),
        *user("underride"),
        *defaults(DEFAULT_UNDERRIDE),
    ]


def find_rule(rules: Iterable[PushRule], kind: str, rule_id: str) -> PushRule | None:
    for rule in rules:
        if rule.kind == kind and rule.rule_id == rule_id:
            return rule
    return None


def is_default_rule(kind: str, rule_id: str) -> bool:
    return (kind, rule_id) in DEFAULTS_BY_ID


# -- client view --------------------------------------------------------------------------------


def _localpart(user_id: str) -> str:
    colon = user_id.find(":")
    return user_id[1:colon] if colon > 0 else user_id[1:]


def _resolve(value_type: str, user_id: str) -> str:
    return _localpart(user_id) if value_type == USER_LOCALPART else user_id


def _client_condition(condition: dict[str, Any], user_id: str) -> dict[str, Any]:
    if "pattern_type" in condition:
        out = {k: v for k, v in condition.items() if k != "pattern_type"}
        out["pattern"] = _resolve(condition["pattern_type"], user_id)
        return out
    if "value_type" in condition:
        out = {k: v for k, v in condition.items() if k != "value_type"}
        out["value"] = _resolve(condition["value_type"], user_id)
        return out
    return condition


def rule_for_client(rule: PushRule, user_id: str) -> dict[str, Any]:
    """The spec's PushRule object; server-default templates resolved for `user_id`."""
    out: dict[str, Any] = {
        "rule_id": rule.rule_id,
        "default": rule.default,
        "enabled": rule.enabled,
        "actions": rule.actions,
    }
    if rule.conditions is not None:
        out["conditions"] = (
            [_client_condition(c, user_id) for c in rule.conditions] if rule.default else rule.conditions
        )
    if rule.kind == "content":
        if rule.pattern is not None:
            out["pattern"] = rule.pattern
        elif rule.pattern_type is not None:
            out["pattern"] = _resolve(rule.pattern_type, user_id)
    return out


def ruleset_for_client(rules: Iterable[PushRule], user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The spec's Ruleset (`{"override": [...], "content": [...], ...}`), in evaluation order."""
    out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for rule in rules:
        out[rule.kind].append(rule_for_client(rule, user_id))
    return out
