"""Application services on the client-server API (application-service-api.md), black box.

The server was started with the registration from appservice_support.py (namespace `@cas_*` /
`#cas_*`, exclusive; sender `cas_bot`). Tests that need the appservice to answer run a small
HTTP server on the registration's `url`.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import unquote

import pytest

from .appservice_support import AS_ID, PROTOCOL, SENDER_LOCALPART, USER_PREFIX, Registration, run_appservice
from .client import V3, MatrixClient, q, register_user
from .harness import Homeserver, User, create_room, room_path
from .spec_schema import assert_error, assert_response_matches_spec

V1 = "/_matrix/client/v1"


@pytest.fixture
def reg(hs: Homeserver) -> Registration:
    if hs.appservice_registration is None:
        pytest.skip("no appservice registration given for this server (--appservice-registration)")
    return Registration.load(hs.appservice_registration)


def as_client(hs: Homeserver, reg: Registration) -> MatrixClient:
    return hs.client(reg.as_token)


def ghost_localpart() -> str:
    return f"{USER_PREFIX}{secrets.token_hex(5)}"


def as_register(hs: Homeserver, reg: Registration, localpart: str, **extra: Any) -> dict[str, Any]:
    body = {"type": "m.login.application_service", "username": localpart, **extra}
    resp = as_client(hs, reg).post(f"{V3}/register", body)
    assert resp.status == 200, resp.describe()
    assert isinstance(resp.body, dict)
    return resp.body


def whoami(client: MatrixClient, **params: Any) -> Any:
    return client.get(f"{V3}/account/whoami", params=params)


def test_register_namespace_user(hs: Homeserver, reg: Registration) -> None:
    localpart = ghost_localpart()
    body = as_register(hs, reg, localpart, inhibit_login=True)
    assert body["user_id"].startswith(f"@{localpart}:")
    assert "access_token" not in body
    # registering again: taken
    resp = as_client(hs, reg).post(
        f"{V3}/register", {"type": "m.login.application_service", "username": localpart}
    )
    assert_error(resp, 400, "M_USER_IN_USE")
    # with a login: the user's own token works
    body = as_register(hs, reg, ghost_localpart())
    resp = whoami(hs.client(body["access_token"]))
    assert resp.status == 200 and resp.body["user_id"] == body["user_id"], resp.describe()


def test_register_outside_namespace_refused(hs: Homeserver, reg: Registration) -> None:
    resp = as_client(hs, reg).post(
        f"{V3}/register", {"type": "m.login.application_service", "username": f"other_{secrets.token_hex(4)}"}
    )
    assert_error(resp, 400, "M_EXCLUSIVE")


def test_register_without_as_token_refused(hs: Homeserver) -> None:
    resp = hs.client().post(
        f"{V3}/register", {"type": "m.login.application_service", "username": ghost_localpart()}
    )
    assert resp.status in (400, 401), resp.describe()


def test_sender_and_masquerading_whoami(hs: Homeserver, reg: Registration) -> None:
    client = as_client(hs, reg)
    resp = whoami(client)
    assert resp.status == 200, resp.describe()
    assert resp.body["user_id"].startswith(f"@{SENDER_LOCALPART}:")
    ghost = as_register(hs, reg, ghost_localpart(), inhibit_login=True)["user_id"]
    resp = whoami(client, user_id=ghost)
    assert resp.status == 200 and resp.body["user_id"] == ghost, resp.describe()


def test_masquerade_outside_namespace_refused(hs: Homeserver, reg: Registration, user: User) -> None:
    assert_error(whoami(as_client(hs, reg), user_id=user.user_id), 403, "M_FORBIDDEN")


def test_masquerade_send_with_massaged_ts(hs: Homeserver, reg: Registration, user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    ghost = as_register(hs, reg, ghost_localpart(), inhibit_login=True)["user_id"]
    client = as_client(hs, reg)
    resp = client.post(f"{V3}/join/{q(room_id)}", {}, params={"user_id": ghost})
    assert resp.status == 200, resp.describe()
    ts = 1_600_000_000_000
    resp = client.put(
        room_path(room_id, "send", "m.room.message", secrets.token_hex(4)),
        {"msgtype": "m.text", "body": "bridged"},
        params={"user_id": ghost, "ts": ts},
    )
    event_id = assert_response_matches_spec(
        resp, "room_send.yaml", "/rooms/{roomId}/send/{eventType}/{txnId}"
    )["event_id"]
    resp = user.client.get(room_path(room_id, "event", event_id))
    assert resp.status == 200, resp.describe()
    assert resp.body["sender"] == ghost
    assert resp.body["origin_server_ts"] == ts
    # an ordinary user's ?ts= is ignored
    resp = user.client.put(
        room_path(room_id, "send", "m.room.message", secrets.token_hex(4)),
        {"msgtype": "m.text", "body": "plain"},
        params={"ts": ts},
    )
    assert resp.status == 200, resp.describe()
    resp = user.client.get(room_path(room_id, "event", resp.body["event_id"]))
    assert resp.body["origin_server_ts"] != ts


def test_exclusive_user_namespace_refused_to_ordinary_users(hs: Homeserver, reg: Registration) -> None:
    assert hs.shared_secret is not None
    with pytest.raises(AssertionError, match="M_EXCLUSIVE"):
        register_user(hs.client(), hs.shared_secret, ghost_localpart())


def test_exclusive_alias_namespace(hs: Homeserver, reg: Registration, user: User) -> None:
    room_id = create_room(user)
    server_name = user.server_name
    alias = f"#{USER_PREFIX}{secrets.token_hex(4)}:{server_name}"
    assert_error(user.client.put(f"{V3}/directory/room/{q(alias)}", {"room_id": room_id}), 400, "M_EXCLUSIVE")
    # the appservice itself may create it
    resp = as_client(hs, reg).put(f"{V3}/directory/room/{q(alias)}", {"room_id": room_id})
    assert resp.status == 200, resp.describe()
    resp = user.client.get(f"{V3}/directory/room/{q(alias)}")
    assert resp.status == 200 and resp.body["room_id"] == room_id, resp.describe()


def test_login_as_namespace_user(hs: Homeserver, reg: Registration) -> None:
    ghost = as_register(hs, reg, ghost_localpart(), inhibit_login=True)["user_id"]
    body = {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": ghost}}
    resp = as_client(hs, reg).post(f"{V3}/login", body)
    assert resp.status == 200, resp.describe()
    assert resp.body["user_id"] == ghost
    assert whoami(hs.client(resp.body["access_token"])).body["user_id"] == ghost


def test_ping(hs: Homeserver, reg: Registration) -> None:
    with run_appservice(reg, lambda method, path, body: (200, {})) as fake:
        resp = as_client(hs, reg).post(f"{V1}/appservice/{q(reg.id)}/ping", {"transaction_id": "compat-ping"})
        body = assert_response_matches_spec(resp, "appservice_ping.yaml", "/appservice/{appserviceId}/ping")
    assert isinstance(body["duration_ms"], int)
    pings = [r for r in fake.received if r.path.startswith("/_matrix/app/v1/ping")]
    assert len(pings) == 1
    assert pings[0].method == "POST"
    assert pings[0].authorization == f"Bearer {reg.hs_token}"
    assert pings[0].body == {"transaction_id": "compat-ping"}


def test_ping_errors(hs: Homeserver, reg: Registration, user: User) -> None:
    with run_appservice(reg, lambda method, path, body: (401, {"errcode": "M_UNKNOWN_TOKEN"})):
        resp = as_client(hs, reg).post(f"{V1}/appservice/{q(reg.id)}/ping", {})
    body = assert_error(resp, 502, "M_BAD_STATUS")
    assert body.get("status") == 401
    # nothing listens any more
    assert_error(as_client(hs, reg).post(f"{V1}/appservice/{q(reg.id)}/ping", {}), 502, "M_CONNECTION_FAILED")
    # another appservice's id, or a user's token
    assert_error(as_client(hs, reg).post(f"{V1}/appservice/not-{AS_ID}/ping", {}), 403, "M_FORBIDDEN")
    assert_error(user.client.post(f"{V1}/appservice/{q(reg.id)}/ping", {}), 403, "M_FORBIDDEN")


def test_thirdparty_protocols_answered_by_the_appservice(
    hs: Homeserver, reg: Registration, user: User
) -> None:
    protocol = {
        "user_fields": ["nick"],
        "location_fields": ["channel"],
        "icon": "mxc://example.org/icon",
        "field_types": {
            "nick": {"regexp": ".*", "placeholder": "nick"},
            "channel": {"regexp": "#.*", "placeholder": "#chan"},
        },
        "instances": [{"desc": "Compat net", "network_id": "net1", "fields": {}}],
    }
    users = [{"userid": f"@{USER_PREFIX}x:{user.server_name}", "protocol": PROTOCOL, "fields": {"nick": "x"}}]

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        if path.startswith(f"/_matrix/app/v1/thirdparty/protocol/{PROTOCOL}"):
            return 200, protocol
        if path.startswith(f"/_matrix/app/v1/thirdparty/user/{PROTOCOL}"):
            return 200, users
        return 404, {"errcode": "M_NOT_FOUND"}

    with run_appservice(reg, answer) as fake:
        resp = user.client.get(f"{V3}/thirdparty/protocols")
        body = assert_response_matches_spec(resp, "third_party_lookup.yaml", "/thirdparty/protocols")
        assert body[PROTOCOL]["user_fields"] == ["nick"]
        assert [i["desc"] for i in body[PROTOCOL]["instances"]] == ["Compat net"]
        resp = user.client.get(f"{V3}/thirdparty/user/{PROTOCOL}", params={"nick": "x"})
        assert resp.status == 200 and resp.body == users, resp.describe()
    lookups = [r for r in fake.received if r.path.startswith(f"/_matrix/app/v1/thirdparty/user/{PROTOCOL}")]
    assert lookups and "nick=x" in lookups[0].path
    assert all(r.authorization == f"Bearer {reg.hs_token}" for r in fake.received)


def test_unknown_alias_query_lets_the_appservice_create_it(
    hs: Homeserver, reg: Registration, user: User
) -> None:
    room_id = create_room(user, preset="public_chat")
    alias = f"#{USER_PREFIX}{secrets.token_hex(4)}:{user.server_name}"
    client = as_client(hs, reg)

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        if path.startswith("/_matrix/app/v1/rooms/"):
            # the appservice creates the alias (as its sender) before answering
            resp = client.put(f"{V3}/directory/room/{q(alias)}", {"room_id": room_id})
            assert resp.status == 200, resp.describe()
            return 200, {}
        return 404, {"errcode": "M_NOT_FOUND"}

    with run_appservice(reg, answer) as fake:
        resp = user.client.get(f"{V3}/directory/room/{q(alias)}")
    assert resp.status == 200 and resp.body["room_id"] == room_id, resp.describe()
    # (event transactions the server pushes meanwhile are not part of the query)
    queries = [unquote(r.path) for r in fake.received if "/transactions/" not in r.path]
    assert queries == [f"/_matrix/app/v1/rooms/{alias}"]
