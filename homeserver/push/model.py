"""The push rule value type shared by the default rules, the user rule model and the evaluator."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# Rule kinds in the order they are evaluated (spec: "Push Rules").
KINDS: tuple[str, ...] = ("override", "content", "room", "sender", "underride")

# Template markers in server-default rules, resolved per user (as Synapse's base rules do): a
# condition with `pattern_type`/`value_type` instead of `pattern`/`value`, and the content rule
# `.m.rule.contains_user_name` with `pattern_type` instead of `pattern`. Clients never see them: the
# client view substitutes the user's id or localpart. User-supplied rules may not use them.
USER_ID = "user_id"
USER_LOCALPART = "user_localpart"


@dataclass(frozen=True, slots=True)
class PushRule:
    """One rule of a user's effective rule set (default or user-defined).

    `conditions` is set for override/underride rules only; `pattern` (or, for the default content
    rule, `pattern_type`) for content rules only; room and sender rules take their condition from
    `rule_id`. Treat the lists as immutable: rules are shared between users.
    """

    kind: str
    rule_id: str
    actions: list[Any]
    conditions: list[dict[str, Any]] | None = None
    pattern: str | None = None
    pattern_type: str | None = None
    default: bool = False
    enabled: bool = True

    def with_settings(self, *, enabled: bool | None = None, actions: list[Any] | None = None) -> PushRule:
        """A copy with a user's `enabled`/`actions` override applied (None keeps the value)."""
        if enabled is None and actions is None:
            return self
        return replace(
            self,
            enabled=self.enabled if enabled is None else enabled,
            actions=self.actions if actions is None else actions,
        )
