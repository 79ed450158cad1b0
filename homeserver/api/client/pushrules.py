"""Push rules (pushrules.yaml): the global ruleset, single rules, their `enabled` and `actions`."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import missing_param
from homeserver.http.routing import ApiRequest, Router

routes = Router()


def _rule_path(req: ApiRequest) -> tuple[str, str, str]:
    return req.user.user_id, req.path["kind"], req.path["ruleId"]


# matrix-js-sdk and Element call `/pushrules/` (the spec's path); the slash-less forms are served
# too rather than answered with Synapse's "trailing slash" pedantry.
@routes.get("/pushrules/")
@routes.get("/pushrules")
async def getPushRules(req: ApiRequest) -> Any:
    return await req.services.push_rules.account_data_content(req.user.user_id)


@routes.get("/pushrules/global/")
@routes.get("/pushrules/global")
async def getPushRulesGlobal(req: ApiRequest) -> Any:
    return await req.services.push_rules.ruleset(req.user.user_id)


@routes.get("/pushrules/global/{kind}/")
async def getPushRulesOfKind(req: ApiRequest) -> Any:
    return await req.services.push_rules.rules_of_kind(req.user.user_id, req.path["kind"])


@routes.get("/pushrules/global/{kind}/{ruleId}")
async def getPushRule(req: ApiRequest) -> Any:
    return await req.services.push_rules.get_rule(*_rule_path(req))


@routes.put("/pushrules/global/{kind}/{ruleId}")
async def setPushRule(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    await req.services.push_rules.set_rule(
        *_rule_path(req), body, before=req.query.get("before"), after=req.query.get("after")
    )
    return {}


@routes.delete("/pushrules/global/{kind}/{ruleId}")
async def deletePushRule(req: ApiRequest) -> Any:
    await req.services.push_rules.delete_rule(*_rule_path(req))
    return {}


@routes.get("/pushrules/global/{kind}/{ruleId}/enabled")
async def isPushRuleEnabled(req: ApiRequest) -> Any:
    return {"enabled": await req.services.push_rules.get_enabled(*_rule_path(req))}


@routes.put("/pushrules/global/{kind}/{ruleId}/enabled")
async def setPushRuleEnabled(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    if "enabled" not in body:
        raise missing_param("Missing 'enabled'")
    await req.services.push_rules.set_enabled(*_rule_path(req), body["enabled"])
    return {}


@routes.get("/pushrules/global/{kind}/{ruleId}/actions")
async def getPushRuleActions(req: ApiRequest) -> Any:
    return {"actions": await req.services.push_rules.get_actions(*_rule_path(req))}


@routes.put("/pushrules/global/{kind}/{ruleId}/actions")
async def setPushRuleActions(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    if "actions" not in body:
        raise missing_param("Missing 'actions'")
    await req.services.push_rules.set_actions(*_rule_path(req), body["actions"])
    return {}
