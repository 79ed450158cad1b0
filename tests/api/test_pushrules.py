"""Push rules API (pushrules.yaml) on both engines, and `m.push_rules` in /sync."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from homeserver.push.evaluator import default_evaluator

from ..conftest import services_of
from .helpers import auth, register

BASE = "/_matrix/client/v3/pushrules"


async def _json(resp: Any) -> Any:
    return await resp.json()


async def _get(client: Any, token: str, path: str) -> tuple[int, Any]:
    resp = await client.get(BASE + path, headers=auth(token))
    return resp.status, await resp.json()


async def _put(client: Any, token: str, path: str, body: Any) -> tuple[int, Any]:
    resp = await client.put(BASE + path, json=body, headers=auth(token))
    return resp.status, await resp.json()


async def _ids(client: Any, token: str, kind: str) -> list[str]:
    status, body = await _get(client, token, "/")
    assert status == 200, body
    return [r["rule_id"] for r in body["global"][kind]]


async def test_default_ruleset(any_engine_client: Any) -> None:
    client = any_engine_client
    user = await register(client, "pusher")
    token = user["access_token"]

    status, body = await _get(client, token, "/")
    assert status == 200, body
    ruleset = body["global"]
    assert set(ruleset) == {"override", "content", "room", "sender", "underride"}
    master = ruleset["override"][0]
    assert master == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": False,
        "conditions": [],
        "actions": [],
    }
    invite = next(r for r in ruleset["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert {"kind": "event_match", "key": "state_key", "pattern": user["user_id"]} in invite["conditions"]
    assert ruleset["content"][0]["rule_id"] == ".m.rule.contains_user_name"
    assert ruleset["content"][0]["pattern"] == "pusher"
    assert all(r["default"] and r["rule_id"].startswith(".") for kind in ruleset.values() for r in kind)

    for path in ("", "/global/", "/global"):
        status, other = await _get(client, token, path)
        assert status == 200
        assert other == (body if path == "" else ruleset)
    status, override = await _get(client, token, "/global/override/")
    assert status == 200 and override == ruleset["override"]
    status, rule = await _get(client, token, "/global/underride/.m.rule.message")
    assert status == 200
    assert rule == {
        "rule_id": ".m.rule.message",
        "default": True,
        "enabled": True,
        "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
        "actions": ["notify"],
    }
    # r0 alias
    resp = await client.get("/_matrix/client/r0/pushrules/", headers=auth(token))
    assert resp.status == 200


async def test_user_rule_lifecycle(any_engine_client: Any) -> None:
    client = any_engine_client
    token = (await register(client))["access_token"]
    cake = {"pattern": "cake", "actions": ["notify", {"set_tweak": "sound", "value": "cakealarm.wav"}]}

    status, body = await _put(client, token, "/global/content/nocake", cake)
    assert (status, body) == (200, {})
    status, rule = await _get(client, token, "/global/content/nocake")
    assert status == 200
    assert rule == {
        "rule_id": "nocake",
        "default": False,
        "enabled": True,
        "pattern": "cake",
        "actions": cake["actions"],
    }
    assert await _ids(client, token, "content") == ["nocake", ".m.rule.contains_user_name"]

    assert await _get(client, token, "/global/content/nocake/enabled") == (200, {"enabled": True})
    assert await _get(client, token, "/global/content/nocake/actions") == (200, {"actions": cake["actions"]})
    assert await _put(client, token, "/global/content/nocake/enabled", {"enabled": False}) == (200, {})
    assert await _get(client, token, "/global/content/nocake/enabled") == (200, {"enabled": False})
    assert await _put(client, token, "/global/content/nocake/actions", {"actions": []}) == (200, {})
    assert await _get(client, token, "/global/content/nocake/actions") == (200, {"actions": []})

    # Replacing the rule keeps it disabled and in place.
    status, _ = await _put(
        client, token, "/global/content/nocake", {"pattern": "cake*lie", "actions": ["notify"]}
    )
    assert status == 200
    status, rule = await _get(client, token, "/global/content/nocake")
    assert (rule["pattern"], rule["actions"], rule["enabled"]) == ("cake*lie", ["notify"], False)

    resp = await client.delete(BASE + "/global/content/nocake", headers=auth(token))
    assert (resp.status, await resp.json()) == (200, {})
    status, body = await _get(client, token, "/global/content/nocake")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    resp = await client.delete(BASE + "/global/content/nocake", headers=auth(token))
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")


async def test_room_sender_override_rules(any_engine_client: Any) -> None:
    client = any_engine_client
    token = (await register(client))["access_token"]
    room_id = "!dj234r78wl45Gh4D:matrix.org"
    assert await _put(client, token, f"/global/room/{quote(room_id)}", {"actions": []}) == (200, {})
    status, rule = await _get(client, token, f"/global/room/{quote(room_id)}")
    assert status == 200
    assert rule == {"rule_id": room_id, "default": False, "enabled": True, "actions": []}
    assert await _put(client, token, f"/global/sender/{quote('@spambot:matrix.org')}", {"actions": []}) == (
        200,
        {},
    )
    assert await _ids(client, token, "sender") == ["@spambot:matrix.org"]

    beer = {
        "conditions": [
            {"kind": "event_match", "key": "content.body", "pattern": "beer"},
            {"kind": "room_member_count", "is": "<=10"},
        ],
        "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}],
    }
    assert await _put(client, token, "/global/override/U2VlIHlvdSBpbiBUaGUgRHVrZQ", beer) == (200, {})
    overrides = await _ids(client, token, "override")
    # User override rules sit between .m.rule.master and the other server-default rules.
    assert overrides[:2] == [".m.rule.master", "U2VlIHlvdSBpbiBUaGUgRHVrZQ"]
    status, rule = await _get(client, token, "/global/override/U2VlIHlvdSBpbiBUaGUgRHVrZQ")
    assert rule["conditions"] == beer["conditions"]
    # Conditions default to none for override/underride rules.
    assert await _put(client, token, "/global/underride/everything", {"actions": ["notify"]}) == (200, {})
    status, rule = await _get(client, token, "/global/underride/everything")
    assert rule["conditions"] == []


async def test_before_and_after(any_engine_client: Any) -> None:
    client = any_engine_client
    token = (await register(client))["access_token"]
    body: dict[str, Any] = {"conditions": [], "actions": []}
    for rule_id in ("a", "b"):
        assert await _put(client, token, f"/global/override/{rule_id}", body) == (200, {})
    assert (await _ids(client, token, "override"))[1:3] == ["b", "a"]  # new rules go first

    assert await _put(client, token, "/global/override/c?before=a", body) == (200, {})
    assert (await _ids(client, token, "override"))[1:4] == ["b", "c", "a"]
    assert await _put(client, token, "/global/override/d?after=a", body) == (200, {})
    assert (await _ids(client, token, "override"))[1:5] == ["b", "c", "a", "d"]
    assert await _put(client, token, "/global/override/d?before=b&after=a", body) == (200, {})
    assert (await _ids(client, token, "override"))[1:5] == ["d", "b", "c", "a"]

    status, err = await _put(client, token, "/global/override/e?before=nope", body)
    assert (status, err["errcode"]) == (400, "M_UNKNOWN")
    status, err = await _put(client, token, "/global/override/e?after=.m.rule.master", body)
    assert status == 400
    assert "e" not in await _ids(client, token, "override")
    # Anchors are per kind.
    status, err = await _put(client, token, "/global/underride/e?before=a", body)
    assert status == 400


async def test_default_rule_settings(any_engine_client: Any) -> None:
    client = any_engine_client
    user = await register(client)
    token = user["access_token"]
    assert await _put(client, token, "/global/override/.m.rule.master/enabled", {"enabled": True}) == (
        200,
        {},
    )
    assert await _get(client, token, "/global/override/.m.rule.master/enabled") == (200, {"enabled": True})
    loud = ["notify", {"set_tweak": "sound", "value": "default"}]
    assert await _put(client, token, "/global/underride/.m.rule.message/actions", {"actions": loud}) == (
        200,
        {},
    )
    status, rule = await _get(client, token, "/global/underride/.m.rule.message")
    assert (status, rule["actions"], rule["default"], rule["enabled"]) == (200, loud, True, True)
    # Both settings of one rule are kept independently.
    assert await _put(client, token, "/global/underride/.m.rule.message/enabled", {"enabled": False}) == (
        200,
        {},
    )
    status, rule = await _get(client, token, "/global/underride/.m.rule.message")
    assert (status, rule["actions"], rule["enabled"]) == (200, loud, False)

    evaluator = await services_of(client).push_rules.evaluator_for(user["user_id"])
    event = {
        "type": "m.room.message",
        "sender": "@x:test.local",
        "room_id": "!r:test.local",
        "content": {"body": "hi"},
    }
    assert evaluator.actions_for(event, user_id=user["user_id"], room_member_count=3) == []

    other = await register(client)
    _status, rule = await _get(client, other["access_token"], "/global/override/.m.rule.master")
    assert rule["enabled"] is False
    evaluators = await services_of(client).push_rules.evaluators_for([other["user_id"], user["user_id"]])
    assert evaluators[other["user_id"]] is default_evaluator()
    assert evaluators[user["user_id"]] is evaluator


async def test_errors(any_engine_client: Any) -> None:
    client = any_engine_client
    token = (await register(client))["access_token"]
    body = {"actions": ["notify"]}

    async def expect(status: int, errcode: str, result: tuple[int, Any]) -> None:
        assert (result[0], result[1].get("errcode")) == (status, errcode), result

    await expect(400, "M_INVALID_PARAM", await _put(client, token, "/global/override/.mine", body))
    await expect(400, "M_INVALID_PARAM", await _put(client, token, "/global/override/.m.rule.master", body))
    await expect(400, "M_INVALID_PARAM", await _put(client, token, "/global/override/a%2Fb", body))
    await expect(400, "M_INVALID_PARAM", await _put(client, token, "/global/override/a%5Cb", body))
    await expect(400, "M_INVALID_PARAM", await _put(client, token, "/global/bogus/x", body))
    await expect(400, "M_INVALID_PARAM", await _put(client, token, "/global/postcontent/x", body))
    await expect(400, "M_INVALID_PARAM", await _get(client, token, "/global/bogus/x"))
    await expect(400, "M_INVALID_PARAM", await _get(client, token, "/global/bogus/"))
    await expect(
        400, "M_INVALID_PARAM", await _put(client, token, "/global/override/x", {"actions": ["bogus"]})
    )
    await expect(
        400, "M_INVALID_PARAM", await _put(client, token, "/global/override/x", {"actions": "notify"})
    )
    await expect(400, "M_MISSING_PARAM", await _put(client, token, "/global/override/x", {}))
    await expect(400, "M_MISSING_PARAM", await _put(client, token, "/global/content/x", body))
    await expect(
        400, "M_INVALID_PARAM", await _put(client, token, "/global/content/x", {**body, "pattern": 1})
    )
    await expect(
        400, "M_INVALID_PARAM", await _put(client, token, "/global/override/x", {**body, "conditions": [{}]})
    )
    await expect(404, "M_NOT_FOUND", await _get(client, token, "/global/override/nope"))
    await expect(404, "M_NOT_FOUND", await _get(client, token, "/global/underride/.m.rule.master"))
    await expect(404, "M_NOT_FOUND", await _get(client, token, "/global/override/nope/enabled"))
    await expect(404, "M_NOT_FOUND", await _get(client, token, "/global/override/nope/actions"))
    await expect(
        404, "M_NOT_FOUND", await _put(client, token, "/global/override/nope/enabled", {"enabled": True})
    )
    await expect(404, "M_NOT_FOUND", await _put(client, token, "/global/override/nope/actions", body))
    await expect(
        400,
        "M_INVALID_PARAM",
        await _put(client, token, "/global/override/.m.rule.master/enabled", {"enabled": "yes"}),
    )
    await expect(
        400,
        "M_INVALID_PARAM",
        await _put(client, token, "/global/override/.m.rule.master/actions", {"actions": [{"x": 1}]}),
    )
    await expect(
        400, "M_MISSING_PARAM", await _put(client, token, "/global/override/.m.rule.master/enabled", {})
    )
    resp = await client.delete(BASE + "/global/override/.m.rule.master", headers=auth(token))
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_INVALID_PARAM")
    resp = await client.put(BASE + "/global/override/x", data=b"not json", headers=auth(token))
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_NOT_JSON")
    resp = await client.get(BASE + "/")
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_MISSING_TOKEN")
    # Nothing above changed the ruleset.
    _status, ruleset = await _get(client, token, "/global/")
    assert all(r["default"] for kind in ruleset.values() for r in kind)


async def test_users_are_isolated(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = (await register(client))["access_token"]
    bob = (await register(client))["access_token"]
    assert await _put(client, alice, "/global/override/mine", {"actions": []}) == (200, {})
    status, _body = await _get(client, bob, "/global/override/mine")
    assert status == 404
    assert await _put(client, bob, "/global/override/mine", {"actions": ["notify"]}) == (200, {})
    status, rule = await _get(client, alice, "/global/override/mine/actions")
    assert rule == {"actions": []}


async def test_changes_reach_sync(any_engine_client: Any) -> None:
    client = any_engine_client
    user = await register(client)
    token = user["access_token"]
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(token))
    initial = await resp.json()
    since = initial["next_batch"]

    assert await _put(client, token, "/global/room/!quiet:test.local", {"actions": []}) == (200, {})
    resp = await client.get(f"/_matrix/client/v3/sync?since={since}&timeout=5000", headers=auth(token))
    body = await resp.json()
    assert resp.status == 200, body
    events = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert len(events) == 1
    content = events[0]["content"]
    assert [r["rule_id"] for r in content["global"]["room"]] == ["!quiet:test.local"]
    _status, current = await _get(client, token, "/")
    assert content == current

    since = body["next_batch"]
    assert await _put(client, token, "/global/override/.m.rule.master/enabled", {"enabled": True}) == (
        200,
        {},
    )
    resp = await client.get(f"/_matrix/client/v3/sync?since={since}&timeout=5000", headers=auth(token))
    body = await resp.json()
    (event,) = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert event["content"]["global"]["override"][0] == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": True,
        "conditions": [],
        "actions": [],
    }
    # Clients cannot write m.push_rules through the generic account data API.
    resp = await client.put(
        f"/_matrix/client/v3/user/{user['user_id']}/account_data/m.push_rules", json={}, headers=auth(token)
    )
    assert resp.status == 405  # spec: server-managed account data
