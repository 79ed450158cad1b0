"""Directory sync against a real OpenLDAP slapd (school tree with Korean names) and our
homeserver on a loopback port: spaces and rooms built, members joined, a student moved between
classes, a leaver deactivated, second runs no-ops, dry runs, LDAP down, a crash mid-run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridges.ldap_sync.sync import RunResult, SyncAborted, run_once

from ..ldap.slapd import ORG, Slapd, running_slapd, school_person_dn, unit_dn
from .harness import BOT, Env, start

ROOT, GRADE, CLASS1, CLASS2, STAFF, PARENTS = (
    "한빛고등학교",
    "3학년",
    "3학년 1반",
    "3학년 2반",
    "교직원",
    "학부모",
)
STUDENTS = {"@s.jiwoo:test.local", "@s.hayoon:test.local", "@s.doyoon:test.local", "@s.seojun:test.local"}
HAN, OH, KANG = "@t.han:test.local", "@t.oh:test.local", "@p.kang:test.local"


@pytest.fixture
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    # one per test: the tests change the directory
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
async def env(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, slapd: Slapd) -> Env:
    return await start(aiohttp_server, aiohttp_client, tmp_path, slapd)


@pytest.fixture
async def any_env(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, slapd: Slapd, engine_config: Any
) -> Env:
    """The homeserver once on SQLite, once on PostgreSQL."""
    return await start(aiohttp_server, aiohttp_client, tmp_path, slapd, engine_config)


async def sync(env: Env, **kw: Any) -> tuple[RunResult, list[str]]:
    lines: list[str] = []
    result = await run_once(env.config(), progress=lines.append, **kw)
    return result, lines


async def one_room(env: Env, name: str, *, space: bool) -> str:
    found = []
    for room in await env.room_by_name(name):
        create = next(e for e in await env.state(room["room_id"]) if e["type"] == "m.room.create")
        if (create["content"].get("type") == "m.space") == space:
            found.append(room["room_id"])
    assert len(found) == 1, (name, space, found)
    return found[0]


def state_of(events: list[dict[str, Any]], etype: str) -> dict[str, dict[str, Any]]:
    return {e["state_key"]: e["content"] for e in events if e["type"] == etype}


async def test_sync_builds_the_tree_and_a_second_run_is_a_no_op(any_env: Env) -> None:
    env = any_env
    result, lines = await sync(env)
    assert result.errors == []
    assert "directory: 7 people, 6 units, 3 groups (1 people skipped)" in lines
    counts = result.plan.counts()
    assert counts["create_user"] == 7 and counts["create_space"] == 6 and counts["create_room"] == 7
    assert any(line.startswith("[ 1/") or line.startswith("[1/") for line in lines)  # progress

    # accounts: Korean display names, email, the DN as the LDAP external id (as LDAP login records)
    doyoon = await env.user("@s.doyoon:test.local")
    assert doyoon is not None and doyoon["displayname"] == "강도윤"
    assert [(t["medium"], t["address"]) for t in doyoon["threepids"]] == [("email", "doyoon@school.example")]
    assert doyoon["external_ids"] == [{"auth_provider": "ldap", "external_id": school_person_dn("s.doyoon")}]
    assert (await env.user("@s.hayoon:test.local") or {})["threepids"] == []

    # the space tree: one space and one default room per unit, parents linked both ways
    spaces = {
        name: await one_room(env, name, space=True) for name in (ROOT, GRADE, CLASS1, CLASS2, STAFF, PARENTS)
    }
    rooms = {
        name: await one_room(env, name, space=False) for name in (ROOT, GRADE, CLASS1, CLASS2, STAFF, PARENTS)
    }
    group_room = await one_room(env, "3학년 2반 학부모", space=False)
    assert len(await env.rooms()) == 13
    tree = {
        ROOT: {spaces[GRADE], spaces[STAFF], spaces[PARENTS], rooms[ROOT], group_room},
        GRADE: {spaces[CLASS1], spaces[CLASS2], rooms[GRADE]},
        CLASS1: {rooms[CLASS1]},
        CLASS2: {rooms[CLASS2]},
    }
    for name, children in tree.items():
        assert set(state_of(await env.state(spaces[name]), "m.space.child")) == children, name
        for child in children:
            parents = state_of(await env.state(child), "m.space.parent")
            assert parents == {spaces[name]: {"via": ["test.local"], "canonical": True}}

    # members: people of a unit and of its sub-units; homeroom groups feed their class
    assert await env.members(rooms[CLASS2]) == {BOT, "@s.doyoon:test.local", "@s.seojun:test.local", OH}
    assert await env.members(spaces[CLASS1]) == {BOT, "@s.jiwoo:test.local", "@s.hayoon:test.local", HAN}
    assert await env.members(rooms[GRADE]) == {BOT, *STUDENTS, HAN, OH}
    assert await env.members(spaces[ROOT]) == {BOT, *STUDENTS, HAN, OH, KANG}
    assert await env.members(rooms[STAFF]) == {BOT, HAN, OH}
    assert await env.members(group_room) == {BOT, KANG, OH}
    # teachers get the configured level wherever they are members
    levels = state_of(await env.state(rooms[CLASS2]), "m.room.power_levels")[""]["users"]
    assert levels == {BOT: 100, OH: 50}
    assert state_of(await env.state(group_room), "m.room.power_levels")[""]["users"] == {BOT: 100, OH: 50}

    # a second run changes nothing
    result, lines = await sync(env)
    assert result.plan.actions == [] and result.errors == []
    assert "plan: nothing to do" in lines
    assert len(await env.rooms()) == 13


async def test_student_moved_between_classes_and_a_leaver(any_env: Env) -> None:
    env = any_env
    await sync(env)
    class1 = await one_room(env, CLASS1, space=False)
    class2 = await one_room(env, CLASS2, space=False)
    class2_space = await one_room(env, CLASS2, space=True)
    grade = await one_room(env, GRADE, space=False)
    conn = env.slapd.admin()
    try:
        # 강도윤 moves from 2반 to 1반; 윤서준 leaves the school; 오세훈 stops being a homeroom teacher
        assert conn.modify_dn(
            school_person_dn("s.doyoon"), "uid=s.doyoon", new_superior=unit_dn("ou=class1,ou=grade3")
        )
        assert conn.delete(school_person_dn("s.seojun"))
        assert conn.modify(
            "cn=homeroom-3-2,ou=groups,dc=school,dc=example",
            {"member": [("MODIFY_REPLACE", [school_person_dn("t.han")])]},
        )
    finally:
        conn.unbind()

    dry, lines = await sync(env, dry_run=True)
    counts = dry.plan.counts()
    assert counts["deactivate"] == 1 and counts["update_user"] == 1
    summary = next(line for line in lines if line.startswith("plan: "))
    assert (
        "deactivate 1" in summary and "kick" in summary and "join" in summary and "nothing changed" in summary
    )
    assert await env.members(class2) == {BOT, "@s.doyoon:test.local", "@s.seojun:test.local", OH}  # untouched

    result, _ = await sync(env)
    assert result.errors == []
    moved = "@s.doyoon:test.local"
    assert moved in await env.members(class1) and moved not in await env.members(class2)
    assert moved not in await env.members(class2_space)
    assert moved in await env.members(grade)  # still in 3학년
    doyoon = await env.user(moved)
    assert doyoon is not None and doyoon["external_ids"][0]["external_id"].startswith(
        "uid=s.doyoon,ou=class1"
    )
    # the leaver is deactivated and out of every room
    seojun = await env.user("@s.seojun:test.local")
    assert seojun is not None and seojun["deactivated"] is True
    assert "@s.seojun:test.local" not in await env.members(grade)
    # 한지민 is now also 2반's homeroom teacher (joined, level 50); 오세훈 lost 2반 and his level there
    assert await env.members(class2) == {BOT, HAN}
    levels = state_of(await env.state(class2), "m.room.power_levels")[""]["users"]
    assert levels == {BOT: 100, HAN: 50}

    result, _ = await sync(env)
    assert result.plan.actions == [] and result.errors == []


async def test_dry_run_prints_counts_and_changes_nothing(env: Env) -> None:
    result, lines = await sync(env, dry_run=True)
    assert lines[-1] == (
        "plan: create_user 7, create_space 6, create_room 7, link 12, join 46, power 11"
        " (dry run: nothing changed)"
    )
    assert any("create_user" in line and "강도윤" in line for line in lines)
    assert await env.rooms() == []
    assert await env.user("@s.doyoon:test.local") is None
    assert not (env.tmp_path / "ldap-sync.db").exists()
    # and the real run does what the dry run said
    real, _ = await sync(env)
    assert real.plan.counts() == result.plan.counts() and real.errors == []


async def test_ldap_down_aborts_before_changing_anything(env: Env) -> None:
    env.slapd.stop()
    with pytest.raises(
        SyncAborted, match=r"cannot reach the LDAP directory at ldap://127\.0\.0\.1.*nothing was changed"
    ):
        await sync(env)
    assert await env.rooms() == []
    assert not (env.tmp_path / "ldap-sync.db").exists()


async def test_wrong_bind_password_aborts(env: Env) -> None:
    config = env.config(ldap={"bind_password": "wrong"})
    with pytest.raises(SyncAborted, match="invalidCredentials"):
        await run_once(config, progress=lambda _line: None)
    assert await env.rooms() == []


async def test_empty_directory_does_not_deactivate_everyone(env: Env) -> None:
    await sync(env)
    config = env.config(users={"filter": "(uid=nobody-at-all)"})
    with pytest.raises(SyncAborted, match="returned no people but 7 accounts are managed"):
        await run_once(config, progress=lambda _line: None)
    assert (await env.user(HAN) or {})["deactivated"] is False
    # a filter that still finds some people but loses many: the per-run limit stops it
    only_students = {"filter": "(employeeType=student)"}
    config = env.config(users=only_students, leavers={"max_per_run": 2})
    with pytest.raises(
        SyncAborted, match=r"3 accounts would be deactivated, more than leavers.max_per_run \(2\)"
    ):
        await run_once(config, progress=lambda _line: None)
    assert (await env.user(KANG) or {})["deactivated"] is False
    assert KANG in await env.members(await one_room(env, ROOT, space=False))
    dry = await run_once(config, dry_run=True, progress=lambda _line: None)  # still lists them
    assert dry.plan.counts()["deactivate"] == 3


async def test_a_crash_mid_run_is_finished_by_the_next_run(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridges.ldap_sync.state import BridgeState

    original = BridgeState.set_room
    calls = {"n": 0}

    def crash_on_third(self: BridgeState, key: str, room_id: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the room exists on the server, the mapping was never written
            raise KeyboardInterrupt
        original(self, key, room_id)

    monkeypatch.setattr(BridgeState, "set_room", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        await sync(env)
    monkeypatch.setattr(BridgeState, "set_room", original)
    assert len(await env.rooms()) == 3

    result, lines = await sync(env)
    assert result.errors == []
    assert any(line.startswith("found unit:") for line in lines)  # recovered from the create event
    assert len(await env.rooms()) == 13  # no duplicate of the orphaned room
    result, _ = await sync(env)
    assert result.plan.actions == []


async def test_a_room_deleted_on_the_server_is_made_again(env: Env) -> None:
    await sync(env)
    staff = await one_room(env, STAFF, space=False)
    resp = await env.client.delete(
        f"/_synapse/admin/v2/rooms/{staff}",
        json={"purge": True},
        headers={"Authorization": f"Bearer {env.admin_token}"},
    )
    assert resp.status == 200
    for _ in range(100):
        status = await env.get(f"/_synapse/admin/v2/rooms/{staff}/delete_status")
        if status["results"][0]["status"] in ("complete", "failed"):
            break
        import asyncio

        await asyncio.sleep(0.05)
    result, _ = await sync(env)
    assert result.errors == []
    assert result.plan.counts()["create_room"] == 1
    new_staff = await one_room(env, STAFF, space=False)
    assert new_staff != staff and await env.members(new_staff) == {BOT, HAN, OH}


async def test_directory_people_sign_in_with_ldap_to_the_synced_account(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, slapd: Slapd
) -> None:
    from ..ldap.slapd import synapse_ldap_module

    module = synapse_ldap_module(slapd.uri, base=ORG, filter="(objectClass=inetOrgPerson)")
    env = await start(aiohttp_server, aiohttp_client, tmp_path, slapd, modules=[module])

    async def login(user: str, password: str) -> dict[str, Any]:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        }
        resp = await env.client.post("/_matrix/client/v3/login", json=body)
        assert resp.status == 200, await resp.json()
        return dict(await resp.json())

    # 최지우 signed in before the first sync: the sync adopts her account instead of creating it
    await login("s.jiwoo", "jiwoo-pw")
    result, _ = await sync(env)
    assert result.errors == [] and result.plan.counts()["create_user"] == 6
    assert "update_user" not in result.plan.counts()  # LDAP login recorded the same name, mail and DN
    # 강도윤 signs in with the directory password to the account the sync made, already in his rooms
    session = await login("s.doyoon", "doyoon-pw")
    assert session["user_id"] == "@s.doyoon:test.local"
    resp = await env.client.get(
        "/_matrix/client/v3/joined_rooms", headers={"Authorization": f"Bearer {session['access_token']}"}
    )
    joined = set((await resp.json())["joined_rooms"])
    assert await one_room(env, CLASS2, space=False) in joined and len(joined) == 6
    jiwoo_rooms = await env.get("/_synapse/admin/v1/users/@s.jiwoo:test.local/joined_rooms")
    assert await one_room(env, CLASS1, space=True) in jiwoo_rooms["joined_rooms"]
    result, _ = await sync(env)
    assert result.plan.actions == []


async def test_a_leaver_is_erased_and_their_own_rooms_handed_over(env: Env) -> None:
    await sync(env)

    async def token_for(user_id: str) -> dict[str, str]:
        resp = await env.client.post(
            f"/_synapse/admin/v1/users/{user_id}/login",
            json={},
            headers={"Authorization": f"Bearer {env.admin_token}"},
        )
        return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}

    han = await token_for(HAN)
    resp = await env.client.post(
        "/_matrix/client/v3/createRoom", json={"name": "수학 동아리", "preset": "private_chat"}, headers=han
    )
    club = (await resp.json())["room_id"]
    jiwoo = await token_for("@s.jiwoo:test.local")
    await env.client.post(
        f"/_matrix/client/v3/rooms/{club}/invite", json={"user_id": "@s.jiwoo:test.local"}, headers=han
    )
    resp = await env.client.post(f"/_matrix/client/v3/join/{club}", json={}, headers=jiwoo)
    assert resp.status == 200

    conn = env.slapd.admin()
    try:
        assert conn.delete(school_person_dn("t.han"))
    finally:
        conn.unbind()
    config = env.config(leavers={"erase": True, "handover_to": "@operator:test.local"})
    lines: list[str] = []
    result = await run_once(config, progress=lines.append)
    assert result.errors == []
    assert [a.text for a in result.plan.actions if a.kind == "deactivate"] == [
        f"deactivate and erase {HAN} (rooms they administer handed over to @operator:test.local)"
    ]
    assert any(f"handed {club} over to @operator:test.local" in line for line in lines)
    levels = state_of(await env.state(club), "m.room.power_levels")[""]["users"]
    assert levels["@operator:test.local"] == 100
    han_account = await env.user(HAN)
    assert han_account is not None and han_account["deactivated"] and han_account["erased"]
    assert han_account["displayname"] is None
    # the class rooms are the bot's: nothing to hand over there, and 한지민 is out of them
    assert HAN not in await env.members(await one_room(env, CLASS1, space=False))
    result = await run_once(config, progress=lambda _line: None)
    assert result.plan.actions == []


async def test_renames_and_a_removed_unit(env: Env) -> None:
    await sync(env)
    parents_space = await one_room(env, PARENTS, space=True)
    parents_room = await one_room(env, PARENTS, space=False)
    root = await one_room(env, ROOT, space=True)
    conn = env.slapd.admin()
    try:
        # 최지우 changes her name; 3학년 1반 is renamed; the parents OU is dissolved (강민호 moves to staff)
        assert conn.modify(school_person_dn("s.jiwoo"), {"cn": [("MODIFY_REPLACE", ["최지우(Jiwoo)"])]})
        assert conn.modify(
            unit_dn("ou=class1,ou=grade3"), {"description": [("MODIFY_REPLACE", ["3학년 1반 (별관)"])]}
        )
        assert conn.modify_dn(school_person_dn("p.kang"), "uid=p.kang", new_superior=unit_dn("ou=staff"))
        assert conn.delete(unit_dn("ou=parents"))
    finally:
        conn.unbind()
    result, _ = await sync(env)
    assert result.errors == []
    counts = result.plan.counts()
    assert counts["rename"] == 2 and counts["unlink"] == 2 and counts["update_user"] == 2
    assert (await env.user("@s.jiwoo:test.local") or {})["displayname"] == "최지우(Jiwoo)"
    assert len(await env.room_by_name("3학년 1반 (별관)")) == 2
    # the dissolved unit's rooms stay, out of the tree and without directory people
    assert not state_of(await env.state(parents_space), "m.space.child").get(parents_room)
    assert not state_of(await env.state(root), "m.space.child").get(parents_space)
    assert await env.members(parents_space) == {BOT} and await env.members(parents_room) == {BOT}
    assert KANG in await env.members(await one_room(env, STAFF, space=False))
    result, _ = await sync(env)
    assert result.plan.actions == []


async def test_a_failing_action_is_reported_and_the_rest_goes_on(env: Env) -> None:
    # someone else already has 강도윤's directory address
    resp = await env.client.put(
        "/_synapse/admin/v2/users/@someone:test.local",
        json={
            "password": "pass-word-1",
            "threepids": [{"medium": "email", "address": "doyoon@school.example"}],
        },
        headers={"Authorization": f"Bearer {env.admin_token}"},
    )
    assert resp.status == 201
    result, lines = await sync(env)
    assert result.errors == [
        "create @s.doyoon:test.local (강도윤): doyoon@school.example belongs to another account; "
        "@s.doyoon:test.local was saved without it"
    ]
    assert any("FAILED (doyoon@school.example belongs to another account" in line for line in lines)
    doyoon = await env.user("@s.doyoon:test.local")
    assert doyoon is not None and doyoon["displayname"] == "강도윤" and doyoon["threepids"] == []
    assert "@s.doyoon:test.local" in await env.members(await one_room(env, CLASS2, space=False))
    # reported again at every run until someone sorts it out; nothing else to do
    result, _ = await sync(env)
    assert [a.kind for a in result.plan.actions] == ["update_user"] and len(result.errors) == 1


async def test_homeserver_unreachable_aborts(env: Env) -> None:
    config = env.config(homeserver={"url": "http://127.0.0.1:1"})
    with pytest.raises(SyncAborted, match=r"homeserver http://127\.0\.0\.1:1 unreachable"):
        await run_once(config, progress=lambda _line: None)
    assert await env.rooms() == []


async def test_bad_registration_and_state_db_abort(env: Env) -> None:
    import yaml

    bad = env.tmp_path / "no-sender.yaml"
    registration = yaml.safe_load(env.registration.read_text())
    del registration["sender_localpart"]
    bad.write_text(yaml.safe_dump(registration))
    with pytest.raises(SyncAborted, match="no sender_localpart"):
        await run_once(env.config(homeserver={"registration": str(bad)}), progress=lambda _line: None)
    with pytest.raises(SyncAborted, match="cannot load the appservice registration"):
        await run_once(env.config(homeserver={"registration": str(env.tmp_path / "nope.yaml")}))
    nowhere = str(env.tmp_path / "missing-dir" / "state.db")
    with pytest.raises(SyncAborted, match="cannot open state_db"):
        await run_once(env.config(state_db=nowhere), progress=lambda _line: None)
    assert await env.rooms() == []
