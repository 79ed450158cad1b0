"""Bad input never gets a 500 and never half-writes (issue #10): long passwords, NUL characters in
bodies, paths and queries, non-canonical event JSON, deep nesting, wrong types in UIA, out-of-range
query integers, odd search terms, and 500 bodies that say nothing about the exception."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from homeserver.app import create_app_from_config
from homeserver.cli import main as cli_main
from homeserver.config import HomeserverConfig

from ..conftest import make_config, services_of
from .ephemeral_helpers import V3, User, q
from .helpers import register

V1 = "/_matrix/client/v1"
# 25 Hangul syllables: 75 UTF-8 bytes, over bcrypt's 72-byte input limit.
KOREAN_PASSWORD = "가나다라마바사아자차카타파하거너더러머버서어저처커"
assert len(KOREAN_PASSWORD.encode()) == 75


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config()))


async def raw(
    hs: Any, method: str, path: str, user: User | None = None, data: bytes | None = None, **params: str
) -> tuple[int, Any]:
    """A request with a hand-made body and query (so NULs and odd JSON reach the server as is)."""
    headers = user.headers if user is not None else {}
    resp = await hs.request(method, path, data=data, headers=headers, params=params or None)
    text = await resp.text()
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    return resp.status, body


def assert_error(status: int, body: Any, expect_status: int, errcode: str) -> None:
    assert (status, body.get("errcode") if isinstance(body, dict) else body) == (expect_status, errcode), body
    assert isinstance(body.get("error"), str)


async def login(hs: Any, localpart: str, password: str) -> int:
    resp = await hs.post(
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        },
    )
    return int(resp.status)


# -- passwords longer than bcrypt's 72 bytes ------------------------------------------------------


async def test_long_password_register_login_change(hs: Any) -> None:
    resp = await hs.post(
        f"{V3}/register",
        json={"username": "kim", "password": KOREAN_PASSWORD, "auth": {"type": "m.login.dummy"}},
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert await login(hs, "kim", KOREAN_PASSWORD) == 200
    assert await login(hs, "kim", KOREAN_PASSWORD[:-2]) == 403

    kim = User(hs, body)
    new_password = KOREAN_PASSWORD[::-1] + "!"
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "kim"}}
    await kim.post(
        f"{V3}/account/password",
        {
            "new_password": new_password,
            "logout_devices": False,
            "auth": {**auth, "password": KOREAN_PASSWORD},
        },
    )
    assert await login(hs, "kim", new_password) == 200
    assert await login(hs, "kim", KOREAN_PASSWORD) == 403
    # The UIA password stage checks long passwords too.
    status, _ = await kim.request(
        "POST", f"{V3}/delete_devices", {"devices": [], "auth": {**auth, "password": new_password}}, None
    )
    assert status == 200


async def test_long_password_admin_registration(hs: Any) -> None:
    await register(hs, "lee", password=KOREAN_PASSWORD * 3)
    assert await login(hs, "lee", KOREAN_PASSWORD * 3) == 200
    assert await login(hs, "lee", "wrong") == 403


async def test_long_password_truncates_like_bcrypt_always_did(hs: Any) -> None:
    """bcrypt < 5 (and Synapse) used the first 72 bytes: hashes made that way still verify, and the
    password is compared on those bytes (the price of staying compatible with those hashes)."""
    await register(hs, "park", password="x")
    services = services_of(hs)
    old_hash = bcrypt.hashpw(KOREAN_PASSWORD.encode()[:72], bcrypt.gensalt(4)).decode()
    async with services.db.transaction() as conn:
        await services.accounts.users.set_password_hash_txn(conn, "@park:test.local", old_hash)
    assert await login(hs, "park", KOREAN_PASSWORD) == 200
    assert await login(hs, "park", KOREAN_PASSWORD[:24]) == 200  # the same 72 bytes
    assert await login(hs, "park", KOREAN_PASSWORD[:23]) == 403


async def test_register_user_cli_long_password(
    aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`homeserver register-user` with a long password, then a login over HTTP on the same data."""
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "server_name": "test.local",
                "data_dir": str(tmp_path),
                "database": {"name": "sqlite3", "args": {"database": str(tmp_path / "hs.db")}},
                "bcrypt_rounds": 4,
            }
        )
    )
    args = ["register-user", "-c", str(config_path), "jung", "-p", KOREAN_PASSWORD]
    code = await asyncio.to_thread(cli_main, args)
    assert code == 0, capsys.readouterr()
    assert "registered @jung:test.local" in capsys.readouterr().out
    hs = await aiohttp_client(create_app_from_config(make_config(tmp_path)))
    assert await login(hs, "jung", KOREAN_PASSWORD) == 200
    assert await login(hs, "jung", KOREAN_PASSWORD[:20]) == 403


# -- NUL characters -------------------------------------------------------------------------------


async def test_nul_in_json_bodies_refused(hs: Any) -> None:
    alice = await User.new(hs)
    bob = await User.new(hs)
    room_id = await alice.create_room()
    await bob.join(room_id)
    send = f"{V3}/rooms/{q(room_id)}/send/m.room.message"
    bodies = [
        b'{"msgtype": "m.text", "body": "a\\u0000b"}',
        b'{"msgtype": "m.text", "body": "x", "\\u0000": 1}',
        b'{"msgtype": "m.text", "body": "x", "deep": {"a": [1, {"b": ["\\u0000"]}]}}',
    ]
    for i, data in enumerate(bodies):
        assert_error(*await raw(hs, "PUT", f"{send}/nul{i}", alice, data), 400, "M_BAD_JSON")
    # A literal backslash-u (an escaped backslash) is an ordinary string.
    status, body = await raw(hs, "PUT", f"{send}/ok", alice, b'{"msgtype": "m.text", "body": "\\\\u0000"}')
    assert status == 200, body
    # Other endpoints' bodies go through the same parser.
    for method, path, data in [
        ("PUT", f"{V3}/rooms/{q(room_id)}/state/m.room.topic/", b'{"topic": "\\u0000"}'),
        ("POST", f"{V3}/createRoom", b'{"name": "r\\u0000"}'),
        ("PUT", f"{V3}/user/{q(alice.user_id)}/account_data/m.x", b'{"k\\u0000": 1}'),
        ("PUT", f"{V3}/profile/{q(alice.user_id)}/displayname", b'{"displayname": "\\u0000"}'),
        ("POST", f"{V3}/search", b'{"search_categories": {"room_events": {"search_term": "\\u0000"}}}'),
        ("POST", f"{V3}/rooms/{q(room_id)}/invite", b'{"user_id": "@x\\u0000:test.local"}'),
    ]:
        assert_error(*await raw(hs, method, path, alice, data), 400, "M_BAD_JSON")
    # Nothing was written, and the room (on PostgreSQL: the writer) still works for everyone.
    await bob.send(room_id, "still fine")
    chunk = (await alice.get(f"{V3}/rooms/{q(room_id)}/messages", dir="b", limit="10"))["chunk"]
    bodies_seen = [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]
    assert bodies_seen == ["still fine", "\\u0000"]
    topic = await alice.request("GET", f"{V3}/rooms/{q(room_id)}/state/m.room.topic/", expect=None)
    assert topic[0] == 404


async def test_nul_in_path_parameters_refused(hs: Any) -> None:
    alice = await User.new(hs)
    room_id = await alice.create_room()
    event_id = await alice.send(room_id)
    room = q(room_id)
    user = q(alice.user_id)
    cases = [
        ("PUT", f"{V3}/rooms/{room}/send/m.room.message/t%00x", b'{"body": "x", "msgtype": "m.text"}'),
        ("PUT", f"{V3}/rooms/{room}/send/m.room%00message/t1", b'{"body": "x", "msgtype": "m.text"}'),
        ("PUT", f"{V3}/rooms/{room}/state/m.room.topic/a%00b", b'{"topic": "x"}'),
        ("PUT", f"{V3}/rooms/{room}/state/m.room%00topic/", b'{"topic": "x"}'),
        ("PUT", f"{V3}/rooms/{room}%00/send/m.room.message/t2", b'{"body": "x", "msgtype": "m.text"}'),
        ("GET", f"{V3}/rooms/{room}/event/{q(event_id)}%00", None),
        ("GET", f"{V3}/rooms/{room}/context/%00", None),
        ("PUT", f"{V3}/user/{user}/account_data/a%00b", b"{}"),
        ("PUT", f"{V3}/user/{user}/rooms/{room}/account_data/a%00b", b"{}"),
        ("GET", f"{V3}/profile/{user}%00", None),
        ("PUT", f"{V3}/devices/DEV%00", b'{"display_name": "x"}'),
        ("PUT", f"{V3}/sendToDevice/m.x/t%00", b'{"messages": {}}'),
        ("PUT", f"{V3}/user/{user}/rooms/{room}/tags/t%00", b"{}"),
        ("POST", f"{V3}/join/%23a%00b:test.local", b"{}"),
        ("PUT", f"{V3}/directory/room/%23a%00b:test.local", json.dumps({"room_id": room_id}).encode()),
        ("PUT", f"{V3}/rooms/{room}/redact/{q(event_id)}/t%00", b"{}"),
    ]
    for method, path, data in cases:
        assert_error(*await raw(hs, method, path, alice, data), 400, "M_INVALID_PARAM")
    # None of those were written.
    state = await alice.get(f"{V3}/rooms/{room}/state")
    assert not [e for e in state if "\x00" in e["type"] or "\x00" in e.get("state_key", "")]
    chunk = (await alice.get(f"{V3}/rooms/{room}/messages", dir="b", limit="50"))["chunk"]
    assert [e["event_id"] for e in chunk if e["type"] == "m.room.message"] == [event_id]


async def test_nul_in_query_parameters_refused(hs: Any) -> None:
    alice = await User.new(hs)
    room_id = await alice.create_room()
    room = q(room_id)
    cases: list[tuple[str, str, bytes | None, dict[str, str]]] = [
        ("GET", f"{V3}/sync", None, {"since": "s1\x00"}),
        ("GET", f"{V3}/sync", None, {"filter": '{"room": {"rooms": ["\x00"]}}'}),
        ("GET", f"{V3}/sync", None, {"filter": '{"room": {"rooms": ["\\u0000"]}}'}),
        ("GET", f"{V3}/rooms/{room}/messages", None, {"from": "t\x00", "dir": "b"}),
        ("GET", f"{V3}/rooms/{room}/messages", None, {"dir": "b", "filter": '{"types": ["\\u0000"]}'}),
        (
            "POST",
            f"{V3}/search",
            b'{"search_categories": {"room_events": {"search_term": "x"}}}',
            {"next_batch": "\x00"},
        ),
        ("GET", f"{V3}/publicRooms", None, {"since": "\x00"}),
        ("GET", f"{V3}/notifications", None, {"from": "1\x00"}),
        ("GET", f"{V3}/rooms/{room}/members", None, {"at": "\x00"}),
        ("GET", f"{V3}/sync", None, {"x\x00": "1"}),
    ]
    for method, path, data, params in cases:
        assert_error(*await raw(hs, method, path, alice, data, **params), 400, "M_INVALID_PARAM")


# -- event content must be canonical JSON ----------------------------------------------------------


async def test_non_canonical_event_content_refused(hs: Any) -> None:
    alice = await User.new(hs)
    room_id = await alice.create_room()
    room = q(room_id)
    bad_values = [b"1.5", b"1e3", b"9007199254740992", b"-9007199254740992", b"99999999999999999999999"]
    for i, value in enumerate(bad_values):
        data = b'{"msgtype": "m.text", "body": "x", "n": {"deep": [' + value + b"]}}"
        assert_error(
            *await raw(hs, "PUT", f"{V3}/rooms/{room}/send/m.room.message/f{i}", alice, data),
            400,
            "M_BAD_JSON",
        )
        state = b'{"topic": "t", "n": ' + value + b"}"
        assert_error(
            *await raw(hs, "PUT", f"{V3}/rooms/{room}/state/m.room.topic/", alice, state), 400, "M_BAD_JSON"
        )
    pl = await alice.get(f"{V3}/rooms/{room}/state/m.room.power_levels/")
    assert_error(
        *await raw(
            hs,
            "PUT",
            f"{V3}/rooms/{room}/state/m.room.power_levels/",
            alice,
            json.dumps({**pl, "users_default": 0.5}).encode(),
        ),
        400,
        "M_BAD_JSON",
    )
    # The edges of the safe range are fine.
    ok = b'{"msgtype": "m.text", "body": "x", "n": [9007199254740991, -9007199254740991]}'
    status, body = await raw(hs, "PUT", f"{V3}/rooms/{room}/send/m.room.message/ok", alice, ok)
    assert status == 200, body
    chunk = (await alice.get(f"{V3}/rooms/{room}/messages", dir="b", limit="50"))["chunk"]
    assert [e["content"].get("n") for e in chunk if e["type"] == "m.room.message"] == [
        [9007199254740991, -9007199254740991]
    ]
    assert not [e for e in chunk if e["type"] == "m.room.topic"]


async def test_floats_allowed_in_legacy_room_versions(hs: Any) -> None:
    """Room versions 1-5 predate strict canonical JSON: floats are valid content there."""
    alice = await User.new(hs)
    room_id = await alice.create_room(room_version="5")
    data = b'{"msgtype": "m.text", "body": "x", "n": 1.5}'
    status, body = await raw(hs, "PUT", f"{V3}/rooms/{q(room_id)}/send/m.room.message/f", alice, data)
    assert status == 200, body


async def test_create_room_with_bad_initial_state_leaves_nothing(hs: Any) -> None:
    alice = await User.new(hs)
    before = (await alice.get(f"{V3}/joined_rooms"))["joined_rooms"]
    bad_requests = [
        {"name": "a", "initial_state": [{"type": "m.x", "state_key": "", "content": {"n": 1.5}}]},
        {"name": "b", "initial_state": [{"type": "m.x", "state_key": "", "content": {"n": 2**60}}]},
        {"name": "c", "power_level_content_override": {"users_default": 0.5}},
        {"name": "d", "creation_content": {"n": 1.25}},
        {
            "name": "e",
            "room_alias_name": "bad-state",
            "initial_state": [{"type": "m.x", "content": {"n": 1.5}}],
        },
    ]
    for body in bad_requests:
        status, data = await alice.request("POST", f"{V3}/createRoom", body, None)
        assert_error(status, data, 400, "M_BAD_JSON")
    assert (await alice.get(f"{V3}/joined_rooms"))["joined_rooms"] == before
    # The alias was not taken by the refused request.
    status, data = await alice.request("GET", f"{V3}/directory/room/{q('#bad-state:test.local')}", None, None)
    assert_error(status, data, 404, "M_NOT_FOUND")
    rooms = await services_of(hs).db.fetchval("SELECT count(*) FROM rooms")
    assert rooms == len(before)
    await alice.create_room(room_alias_name="bad-state")  # and can be now


async def test_refused_account_writes_leave_nothing(hs: Any) -> None:
    """Registration and password change refused part-way write nothing."""
    for body in (
        {"username": "half", "password": "p" * 513, "auth": {"type": "m.login.dummy"}},
        {"username": "half", "password": "pw", "device_id": 5, "auth": {"type": "m.login.dummy"}},
        {"username": "half", "password": "pw", "auth": {"type": "m.login.dummy"}, "inhibit_login": "yes"},
    ):
        resp = await hs.post(f"{V3}/register", json=body)
        assert resp.status == 400, await resp.json()
        available = await hs.get(f"{V3}/register/available", params={"username": "half"})
        assert available.status == 200, await available.json()
    body = await register(hs, "pwuser", password="old-password")
    user = User(hs, body)
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "pwuser"}}
    for new_password in (5, "p" * 513, None):
        status, data = await user.request(
            "POST",
            f"{V3}/account/password",
            {"new_password": new_password, "auth": {**auth, "password": "old-password"}},
            None,
        )
        assert status == 400, data
    assert await login(hs, "pwuser", "old-password") == 200


async def test_deeply_nested_bodies_refused(hs: Any) -> None:
    alice = await User.new(hs)
    room_id = await alice.create_room()
    send = f"{V3}/rooms/{q(room_id)}/send/m.room.message"

    def nested(depth: int) -> bytes:
        # {"k": {"k": ... {} ...}} with `depth` objects, the outermost included.
        return b'{"k":' * (depth - 1) + b"{}" + b"}" * (depth - 1)

    def message(depth: int) -> bytes:
        # A message body (its content) nesting `depth` levels.
        return b'{"msgtype": "m.text", "body": "x", "k": ' + nested(depth - 1) + b"}"

    account_data = f"{V3}/user/{q(alice.user_id)}/account_data/m.deep"
    for depth in (129, 300, 1100, 5000):
        assert_error(*await raw(hs, "PUT", account_data, alice, nested(depth)), 400, "M_BAD_JSON")
        assert_error(*await raw(hs, "PUT", f"{send}/d{depth}", alice, message(depth)), 400, "M_BAD_JSON")
    # Event content may nest 126 levels, as in Synapse (127 with the event around it).
    assert_error(*await raw(hs, "PUT", f"{send}/d127", alice, message(127)), 400, "M_BAD_JSON")
    status, body = await raw(hs, "PUT", f"{send}/d126", alice, message(126))
    assert status == 200, body
    # Other bodies 128: stored, served and synced.
    status, body = await raw(hs, "PUT", account_data, alice, nested(128))
    assert status == 200, body
    assert await alice.get(account_data) == json.loads(nested(128))
    synced = await alice.sync()
    assert [e for e in synced["rooms"]["join"][room_id]["timeline"]["events"] if "k" in e["content"]]
    assert [e for e in synced["account_data"]["events"] if e["type"] == "m.deep"]


# -- user-interactive auth with wrong types -------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        {"type": 5},
        {"type": ["m.login.password"]},
        {"type": {"a": 1}},
        {"type": None},
        {"type": True},
        {"type": "m.login.password", "identifier": "alice"},
        {"type": "m.login.password", "identifier": {"type": 1, "user": "x"}},
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": ["x"]}},
        {"type": "m.login.password", "user": 5, "password": "x"},
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "x"}, "password": 5},
        {"session": 5},
        {"session": ["x"], "type": "m.login.password"},
        "m.login.password",
        ["m.login.password"],
    ],
)
async def test_uia_wrong_types(hs: Any, auth: Any) -> None:
    alice = await User.new(hs)
    endpoints = [
        ("DELETE", f"{V3}/devices/{q(alice.device_id)}", {}),
        ("POST", f"{V3}/delete_devices", {"devices": [alice.device_id]}),
        ("POST", f"{V3}/account/password", {"new_password": "new-pass-word"}),
        ("POST", f"{V3}/account/deactivate", {}),
    ]
    for method, path, body in endpoints:
        status, data = await alice.request(method, path, {**body, "auth": auth}, None)
        # Malformed `auth` is a bad request, as Synapse answers; a wrong identifier or password
        # inside a well-formed password stage is a failed stage: the 401 answer with the flows.
        assert status in (400, 401), (path, status, data)
        assert isinstance(data.get("errcode"), str), data
        if status == 401:
            assert data["flows"] == [{"stages": ["m.login.password"]}], data
        else:
            assert data["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM", "M_MISSING_PARAM", "M_UNKNOWN"), data
    # Nothing happened: the device and account are still there.
    await alice.get(f"{V3}/devices/{q(alice.device_id)}")
    await alice.get(f"{V3}/account/whoami")


async def test_uia_wrong_types_cross_signing(hs: Any) -> None:
    alice = await User.new(hs)
    master = {
        "user_id": alice.user_id,
        "usage": ["master"],
        "keys": {"ed25519:" + "A" * 43: "A" * 43},
    }
    # First upload needs no UIA; a replacement does.
    await alice.post(f"{V3}/keys/device_signing/upload", {"master_key": master})
    other = {**master, "keys": {"ed25519:" + "B" * 43: "B" * 43}}
    for auth in ({"type": 5}, {"type": ["x"]}, "x", {"session": {}}):
        status, data = await alice.request(
            "POST", f"{V3}/keys/device_signing/upload", {"master_key": other, "auth": auth}, None
        )
        assert status in (400, 401), (auth, status, data)


# -- integers in query strings --------------------------------------------------------------------


async def test_query_integers_out_of_range(hs: Any) -> None:
    alice = await User.new(hs)
    room_id = await alice.create_room()
    room = q(room_id)
    huge = str(2**64)
    cases = [
        (f"{V1}/rooms/{room}/timestamp_to_event", {"ts": huge, "dir": "f"}),
        (f"{V1}/rooms/{room}/timestamp_to_event", {"ts": "-" + huge, "dir": "b"}),
        (f"{V1}/rooms/{room}/timestamp_to_event", {"ts": "12abc", "dir": "b"}),
        (f"{V1}/rooms/{room}/timestamp_to_event", {"ts": "1_000", "dir": "b"}),
        (f"{V1}/rooms/{room}/timestamp_to_event", {"ts": "٣", "dir": "b"}),  # an Arabic-Indic digit
        (f"{V3}/notifications", {"from": huge}),
        (f"{V3}/notifications", {"limit": huge}),
        (f"{V3}/notifications", {"limit": "-5"}),
        (f"{V3}/rooms/{room}/messages", {"dir": "b", "limit": huge}),
        (f"{V3}/rooms/{room}/messages", {"dir": "b", "limit": "-1"}),
        (f"{V3}/rooms/{room}/messages", {"dir": "b", "limit": "9" * 5000}),
        (f"{V3}/rooms/{room}/messages", {"dir": "b", "filter": huge}),
        (f"{V3}/publicRooms", {"limit": huge}),
        (f"{V3}/publicRooms", {"limit": "x"}),
        (f"{V3}/sync", {"timeout": huge}),
        (f"{V3}/sync", {"timeout": "-1"}),
        (f"{V3}/sync", {"filter": huge}),
        (f"{V3}/rooms/{room}/context/$x", {"limit": huge}),
        (f"{V1}/rooms/{room}/relations/$x", {"limit": huge}),
        (f"{V1}/rooms/{room}/threads", {"limit": huge}),
        (f"{V1}/rooms/{room}/threads", {"limit": "-2"}),
        (f"{V3}/publicRooms", {"limit": "-2"}),
        (f"{V1}/rooms/{room}/timestamp_to_event", {"ts": "-1", "dir": "b"}),
    ]
    for path, params in cases:
        assert_error(*await raw(hs, "GET", path, alice, **params), 400, "M_INVALID_PARAM")
    # In range they work.
    for path, params in [
        (f"{V1}/rooms/{room}/timestamp_to_event", {"ts": str(2**63 - 1), "dir": "b"}),
        (f"{V1}/rooms/{room}/timestamp_to_event", {"ts": "0", "dir": "f"}),
        (f"{V3}/notifications", {"from": str(2**63 - 1), "limit": "1000"}),
        (f"{V3}/rooms/{room}/messages", {"dir": "b", "limit": str(2**63 - 1)}),
        (f"{V3}/publicRooms", {"limit": str(2**63 - 1)}),
    ]:
        status, body = await raw(hs, "GET", path, alice, **params)
        assert status == 200, (path, params, body)
    status, body = await raw(hs, "GET", f"{V3}/user/{q(alice.user_id)}/filter/{huge}", alice)
    assert_error(status, body, 404, "M_NOT_FOUND")


async def test_body_integers_beyond_64_bits_refused(hs: Any) -> None:
    """orjson reads integers up to 2**64 - 1 as int: the body helpers refuse what no BIGINT holds."""
    alice = await User.new(hs)
    room_id = await alice.create_room()
    u64 = b"18446744073709551615"
    for method, path, data in [
        ("POST", f"{V3}/publicRooms", b'{"limit": ' + u64 + b"}"),
        ("POST", f"{V3}/user_directory/search", b'{"search_term": "a", "limit": ' + u64 + b"}"),
        (
            "PUT",
            f"{V3}/rooms/{q(room_id)}/typing/{q(alice.user_id)}",
            b'{"typing": true, "timeout": ' + u64 + b"}",
        ),
    ]:
        assert_error(*await raw(hs, method, path, alice, data), 400, "M_BAD_JSON")


async def test_out_of_range_tokens_refused(hs: Any) -> None:
    """Stream and pagination tokens whose positions do not fit a BIGINT are 400, not a SQL error."""
    alice = await User.new(hs)
    room_id = await alice.create_room()
    room = q(room_id)
    big = str(2**63)
    tokens = [
        f"s{big}",
        f"s1_{big}_0",
        f"s{'9' * 30}_1",
        f"t1-{big}",
        "s+1_1",
        "s 1",
        "s1_" + "1_" * 100 + "1",
    ]
    for token in tokens:
        # /sync reads every position of the token ...
        assert_error(*await raw(hs, "GET", f"{V3}/sync", alice, since=token), 400, "M_INVALID_PARAM")
        # ... pagination reads the events position only (extra components of a sync token are
        # ignored there): refused or served, never a database error.
        for path, params in [
            (f"{V3}/rooms/{room}/messages", {"dir": "b", "from": token}),
            (f"{V3}/rooms/{room}/messages", {"dir": "b", "to": token}),
            (f"{V1}/rooms/{room}/threads", {"from": token}),
            (f"{V1}/rooms/{room}/relations/$x", {"from": token}),
        ]:
            status, body = await raw(hs, "GET", path, alice, **params)
            assert status in (200, 400, 404), (path, params, body)
    # The largest position is still a valid (if far-future) token.
    status, body = await raw(
        hs, "GET", f"{V3}/rooms/{room}/messages", alice, dir="b", **{"from": f"s{2**63 - 1}"}
    )
    assert status == 200, body


# -- odd search terms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "term",
    [
        '"',
        '"unbalanced',
        "*",
        "a*",
        "^x",
        "x:y",
        "NEAR(a b)",
        "a AND OR NOT b",
        "(",
        ")",
        "'; DROP TABLE events; --",
        "\\",
        "%_%",
        "-x",
        "+",
        "{}[]",
        "😀",
        "가",
        " ",
        "a" * 5000,
        "가나다" * 2000,
        "\u200b",
    ],
)
async def test_odd_search_terms(hs: Any, term: str) -> None:
    alice = await User.new(hs)
    room_id = await alice.create_room()
    await alice.send(room_id, "hello a*b NEAR(a b) 가나다 x:y")
    status, body = await alice.request(
        "POST", f"{V3}/search", {"search_categories": {"room_events": {"search_term": term}}}, None
    )
    assert status in (200, 400), body
    if status == 200:
        assert isinstance(body["search_categories"]["room_events"]["results"], list)


# -- 500 answers say nothing about the exception --------------------------------------------------


async def test_internal_error_body_is_generic(hs: Any, caplog: pytest.LogCaptureFixture) -> None:
    alice = await User.new(hs)
    services = services_of(hs)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail: /var/lib/db password=hunter2")

    services.tags.get_tags = broken  # type: ignore[method-assign]
    room_id = await alice.create_room()
    with caplog.at_level(logging.ERROR):
        status, body = await raw(hs, "GET", f"{V3}/user/{q(alice.user_id)}/rooms/{q(room_id)}/tags", alice)
    assert (status, body) == (500, {"errcode": "M_UNKNOWN", "error": "Internal server error"})
    logged = [r for r in caplog.records if r.exc_info and "secret detail" in str(r.exc_info[1])]
    assert logged, "the traceback is logged"
