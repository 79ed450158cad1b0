"""Push rules: the server-default rule set, the user rule model and a fast evaluator.

Pure code: nothing here touches storage or HTTP. `services/push_rules.py` stores user rules and
serves them; the persister (later) asks `PushRuleEvaluator.actions_for` for every local member.
"""

from homeserver.push.evaluator import PreparedEvent, PushRuleEvaluator, prepare_event
from homeserver.push.rules import KINDS, PushRule, effective_rules, ruleset_for_client

__all__ = [
    "KINDS",
    "PreparedEvent",
    "PushRule",
    "PushRuleEvaluator",
    "effective_rules",
    "prepare_event",
    "ruleset_for_client",
]
