"""The audit log (our extension, docs/admin.md): every audited action leaves exactly one record
with actor, target, IP and user agent; admins query it with filters and paging and export it as
JSON lines; nothing can change or delete a record except the retention purge. Also the in-process
side of shadow-bans, suspension and rate-limit overrides. Both engines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import SERVICES, create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.core.clock import FakeClock
from homeserver.services.audit import ACTIONS, AuditLog
from homeserver.storage.stores.audit import AuditQuery, AuditStore

from .ephemeral_helpers import NO_PRESENCE, V3, User, q
from .helpers import register

AUDIT = "/_synapse/admin/v1/audit_log"
V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
UA = {"User-Agent": "audit-test/1.0"}


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


async def _records(admin: User, **params: Any) -> list[dict[str, Any]]:
    body = await admin.get(AUDIT, **params)
    return list(body["records"])


async def _all_ids(admin: User) -> set[int]:
    return {r["id"] for r in await _records(admin, limit=1000)}


class Recorder:
    """Asserts that an action leaves exactly one new record (and which)."""

    def __init__(self, admin: User) -> None:
        self.admin = admin
        self.seen: set[int] = set()

    async def start(self) -> None:
        self.seen = await _all_ids(self.admin)

    async def expect(self, action: str, actor: str | None, target: str | None) -> dict[str, Any]:
        return (await self.expect_all([(action, actor, target)]))[0]

    async def expect_all(self, expected: list[tuple[str, str | None, str | None]]) -> list[dict[str, Any]]:
        """Exactly these new records, newest first."""
        records = [r for r in await _records(self.admin, limit=1000) if r["id"] not in self.seen]
        assert [(r["action"], r["actor"], r["target"]) for r in records] == expected, records
        self.seen |= {r["id"] for r in records}
        return records


async def test_each_action_leaves_one_record(hs: Any) -> None:
    admin = User(hs, await register(hs, admin=True))
    alice = User(hs, await register(hs, "alice"))
    bob = User(hs, await register(hs, "bob"))
    rec = Recorder(admin)
    await rec.start()

    # login, with IP and user agent
    resp = await hs.post(
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "pass-word-1",
        },
        headers=UA,
    )
    assert resp.status == 200
    login = await resp.json()
    record = await rec.expect("login", alice.user_id, login["device_id"])
    assert record["user_agent"] == "audit-test/1.0" and record["ip"] == "127.0.0.1"
    assert record["detail"] == {"type": "m.login.password"}

    resp = await hs.post(
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "no",
        },
    )
    assert resp.status == 403
    await rec.expect("login.failed", alice.user_id, alice.user_id)

    second = User(hs, login)
    await second.post(f"{V3}/logout", {})
    await rec.expect("logout", alice.user_id, login["device_id"])

    room_id = await alice.create_room()
    await rec.expect("room.create", alice.user_id, room_id)
    await bob.join(room_id)
    await alice.post(f"{V3}/rooms/{q(room_id)}/kick", {"user_id": bob.user_id, "reason": "spam"})
    kick = await rec.expect("room.kick", alice.user_id, bob.user_id)
    assert kick["detail"] == {"room_id": room_id, "membership": "leave", "reason": "spam"}
    await alice.post(f"{V3}/rooms/{q(room_id)}/ban", {"user_id": bob.user_id})
    await rec.expect("room.ban", alice.user_id, bob.user_id)
    await alice.post(f"{V3}/rooms/{q(room_id)}/unban", {"user_id": bob.user_id})
    await rec.expect("room.unban", alice.user_id, bob.user_id)
    # A server admin changing someone else's membership (an invite here).
    admin_room = await admin.create_room()
    await rec.expect("room.create", admin.user_id, admin_room)
    await admin.invite(admin_room, bob.user_id)
    await rec.expect("room.membership", admin.user_id, bob.user_id)

    # devices and passwords
    await admin.post(f"{V2}/users/{q(alice.user_id)}/devices", {"device_id": "EXTRA"}, expect=201)
    await rec.expect("admin.device.create", admin.user_id, alice.user_id)
    status, _ = await alice.request("DELETE", f"{V3}/devices/EXTRA", expect=None)
    assert status == 401  # UIA challenge: nothing happened, nothing recorded
    await alice.request(
        "DELETE",
        f"{V3}/devices/EXTRA",
        {
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "pass-word-1",
            }
        },
    )
    await rec.expect("device.delete", alice.user_id, alice.user_id)
    await admin.post(
        f"{V1}/reset_password/{q(bob.user_id)}", {"new_password": "new-pass-1", "logout_devices": False}
    )
    await rec.expect("admin.user.reset_password", admin.user_id, bob.user_id)
    await alice.post(
        f"{V3}/account/password",
        {
            "new_password": "pass-word-2",
            "logout_devices": False,
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "pass-word-1",
            },
        },
    )
    await rec.expect("password.change", alice.user_id, alice.user_id)

    # admin account actions
    carol_id = "@carol:test.local"
    await admin.put(f"{V2}/users/{q(carol_id)}", {"password": "carol-pass-1"}, expect=201)
    await rec.expect("admin.user.create", admin.user_id, carol_id)
    await admin.put(f"{V2}/users/{q(carol_id)}", {"displayname": "Carol", "password": "carol-pass-2"})
    await rec.expect("admin.user.modify", admin.user_id, carol_id)
    await admin.put(f"{V1}/users/{q(carol_id)}/admin", {"admin": True})
    await rec.expect("admin.user.set_admin", admin.user_id, carol_id)
    await admin.post(f"{V1}/users/{q(bob.user_id)}/shadow_ban", {})
    await rec.expect("admin.user.shadow_ban", admin.user_id, bob.user_id)
    await admin.delete(f"{V1}/users/{q(bob.user_id)}/shadow_ban")
    await rec.expect("admin.user.unshadow_ban", admin.user_id, bob.user_id)
    await admin.put(f"{V1}/suspend/{q(bob.user_id)}", {"suspend": True})
    await rec.expect("admin.user.suspend", admin.user_id, bob.user_id)
    await admin.post(f"{V1}/users/{q(bob.user_id)}/override_ratelimit", {"messages_per_second": 0})
    await rec.expect("admin.user.ratelimit.set", admin.user_id, bob.user_id)
    await admin.post(f"{V1}/users/{q(bob.user_id)}/login", {})
    await rec.expect("admin.user.login_as", admin.user_id, bob.user_id)
    await admin.post(f"{V1}/registration_tokens/new", {"token": "tok1"})
    await rec.expect("admin.registration_token.create", admin.user_id, "tok1")
    await admin.post(f"{V1}/deactivate/{q(carol_id)}", {"erase": True})
    # The deactivation, then the GDPR erasure it triggers (docs/retention-erasure.md).
    _erased, record = await rec.expect_all(
        [("user.erase", admin.user_id, carol_id), ("admin.user.deactivate", admin.user_id, carol_id)]
    )
    assert record["detail"] == {"erase": True}

    await alice.post(f"{V3}/logout/all", {})
    await rec.expect("logout.all", alice.user_id, alice.user_id)
    # Reads leave nothing.
    await admin.get(f"{V2}/users")
    await admin.get(f"{V2}/users/{q(bob.user_id)}")
    assert [r for r in await _records(admin, limit=1000) if r["id"] not in rec.seen] == []


async def test_filters_and_paging(hs: Any) -> None:
    admin = User(hs, await register(hs, admin=True))
    users = [User(hs, await register(hs, f"p{i}")) for i in range(3)]
    for u in users:
        await u.create_room()
    rooms = await _records(admin, action="room.create")
    assert [r["actor"] for r in rooms] == [u.user_id for u in reversed(users)]  # newest first
    assert await _records(admin, action="room.create", actor=users[1].user_id) == [rooms[1]]
    assert await _records(admin, target=rooms[0]["target"]) == [rooms[0]]
    forwards = await _records(admin, action="room.create", dir="f")
    assert forwards == list(reversed(rooms))

    page1 = await admin.get(AUDIT, action="room.create", limit=2)
    assert len(page1["records"]) == 2 and page1["next_token"]
    page2 = await admin.get(AUDIT, action="room.create", limit=2, next_token=page1["next_token"])
    assert page2["records"] == rooms[2:] and "next_token" not in page2

    ts = rooms[1]["ts"]
    in_range = await _records(admin, action="room.create", **{"from": ts, "to": ts + 1})
    assert rooms[1] in in_range and all(r["ts"] == ts for r in in_range)
    assert await _records(admin, action="room.create", **{"from": rooms[0]["ts"] + 1}) == []
    _, body = await admin.request("GET", AUDIT, expect=400, limit="x")
    assert body["errcode"] == "M_INVALID_PARAM"


async def test_admin_only_and_append_only(hs: Any) -> None:
    admin = User(hs, await register(hs, admin=True))
    user = User(hs, await register(hs))
    for path in (AUDIT, f"{AUDIT}/export"):
        status, body = await user.request("GET", path, expect=403)
        assert body["errcode"] == "M_FORBIDDEN"
        resp = await hs.get(path)
        assert resp.status == 401
    # No endpoint modifies or deletes records.
    records = await _records(admin)
    record_id = records[0]["id"]
    for method, path in (
        ("DELETE", AUDIT),
        ("PUT", AUDIT),
        ("POST", AUDIT),
        ("DELETE", f"{AUDIT}/{record_id}"),
        ("PUT", f"{AUDIT}/{record_id}"),
    ):
        status, body = await admin.request(method, path, {}, expect=None)
        assert status in (404, 405) and body["errcode"] == "M_UNRECOGNIZED", (method, path, status)
    assert await _records(admin) == records
    # Not even the database accepts an update.
    services = hs.server.app[SERVICES]
    with pytest.raises(Exception, match="append-only"):
        async with services.db.transaction() as conn:
            await conn.execute("UPDATE audit_log SET actor = 'x' WHERE id = $1", record_id)
    assert await _records(admin) == records


async def test_export_json_lines(hs: Any) -> None:
    admin = User(hs, await register(hs, admin=True))
    for i in range(3):
        await register(hs, f"e{i}")
    resp = await hs.get(f"{AUDIT}/export", params={"action": "register"}, headers=admin.headers)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [r["target"] for r in lines] == [
        admin.user_id,
        "@e0:test.local",
        "@e1:test.local",
        "@e2:test.local",
    ]  # oldest first
    exports = await _records(admin, action="admin.audit_log.export")
    assert len(exports) == 1 and exports[0]["actor"] == admin.user_id


async def test_retention_purge(engine_config: Callable[..., HomeserverConfig]) -> None:
    from homeserver.storage.engine import open_database
    from homeserver.storage.migrations import migrate

    db = await open_database(engine_config().database)
    try:
        await migrate(db)
        clock = FakeClock()
        day = 24 * 3600 * 1000
        audit = AuditLog(db, AuditStore(db), clock, retention_ms=30 * day)
        await audit.record("login", actor="@old:x", target="@old:x")
        clock.advance(31 * day)
        await audit.record("login", actor="@new:x", target="@new:x")
        assert await audit.purge_expired() == 1
        left = await audit.query(AuditQuery(), after_id=None, limit=10, newest_first=False)
        assert [(r.action, r.actor) for r in left] == [("login", "@new:x"), ("audit_log.purge", None)]
        assert left[1].detail["deleted"] == 1
        with pytest.raises(ValueError):
            await audit.record("no.such.action", actor=None)
    finally:
        await db.close()


def test_actions_are_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "admin.md").read_text()
    missing = [a for a in sorted(ACTIONS) if f"`{a}`" not in doc]
    assert missing == []


async def test_ratelimit_override_applies(hs: Any, engine_config: Callable[..., HomeserverConfig]) -> None:
    admin = User(hs, await register(hs, admin=True))
    user = User(hs, await register(hs))
    room_id = await user.create_room()
    services = hs.server.app[SERVICES]
    # A tight override: one message, then 429; removing it restores the (generous) default.
    await admin.post(
        f"{V1}/users/{q(user.user_id)}/override_ratelimit", {"messages_per_second": 1, "burst_count": 1}
    )
    assert services.restrictions.get_override(user.user_id) is not None
    await user.send(room_id, "one")
    status, body = await user.request(
        "PUT",
        f"{V3}/rooms/{q(room_id)}/send/m.room.message/t2",
        {"msgtype": "m.text", "body": "two"},
        expect=None,
    )
    assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED"
    await admin.post(
        f"{V1}/users/{q(user.user_id)}/override_ratelimit", {"messages_per_second": 0, "burst_count": 0}
    )
    for i in range(5):
        await user.send(room_id, f"free {i}")


async def test_locked_user(hs: Any) -> None:
    admin = User(hs, await register(hs, admin=True))
    user = User(hs, await register(hs, "locky"))
    await admin.put(f"{V2}/users/{q(user.user_id)}", {"locked": True})
    _, body = await user.request("GET", f"{V3}/account/whoami", expect=401)
    assert body["errcode"] == "M_USER_LOCKED"
    resp = await hs.post(
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "locky"},
            "password": "pass-word-1",
        },
    )
    assert resp.status == 401 and (await resp.json())["errcode"] == "M_USER_LOCKED"
    await admin.put(f"{V2}/users/{q(user.user_id)}", {"locked": False})
    await user.get(f"{V3}/account/whoami")
