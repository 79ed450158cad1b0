"""Test-facing helpers: the target homeserver, registered users and user-interactive auth."""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from .client import DEFAULT_PASSWORD, V3, MatrixClient, Response, q, random_localpart, register_user
from .spec_schema import (
    assert_error,
    assert_matches_spec,
    assert_request_matches_spec,
    assert_response_matches_spec,
    is_documented,
    spec_dir,
    validate,
)


@dataclass
class User:
    user_id: str
    access_token: str
    device_id: str
    password: str
    client: MatrixClient

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]

    @property
    def server_name(self) -> str:
        return self.user_id.split(":", 1)[1]


@dataclass
class Homeserver:
    """The server under test: its base URL, shared secret and the database backend label."""

    base_url: str
    shared_secret: str | None
    backend: str
    # The appservice registration file the server was started with (appservice_support.py).
    appservice_registration: str | None = None

    def client(self, access_token: str | None = None) -> MatrixClient:
        return MatrixClient(self.base_url, access_token)

    def register(
        self,
        localpart: str | None = None,
        password: str = DEFAULT_PASSWORD,
        admin: bool = False,
        displayname: str | None = None,
    ) -> User:
        if not self.shared_secret:
            pytest.fail("no registration shared secret: pass --shared-secret or set MATRIX_SHARED_SECRET")
        user_id, token, device_id = register_user(
            self.client(), self.shared_secret, localpart or random_localpart(), password, admin, displayname
        )
        return User(user_id, token, device_id, password, self.client(token))

    def login(self, identifier_user: str, password: str, **extra: Any) -> Response:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": identifier_user},
            "password": password,
            **extra,
        }
        return self.client().post(f"{V3}/login", body)

    def login_ok(self, user: User, **extra: Any) -> User:
        """Log ``user`` in on a new device; returns a User bound to the new session."""
        resp = self.login(user.user_id, user.password, **extra)
        assert resp.status == 200, resp.describe()
        body = resp.body
        return User(
            body["user_id"],
            body["access_token"],
            body["device_id"],
            user.password,
            self.client(body["access_token"]),
        )

    @functools.cached_property
    def server_software(self) -> str:
        """The implementation name, from the federation version endpoint or the Server header."""
        resp = self.client().get("/_matrix/federation/v1/version")
        if resp.status == 200 and isinstance(resp.body, dict):
            name = (resp.body.get("server") or {}).get("name")
            if isinstance(name, str):
                return name
        return (resp.header("Server") or "").split("/", 1)[0]

    @property
    def is_synapse(self) -> bool:
        return self.server_software.lower() == "synapse"


# --------------------------------------------------------------------------- user-interactive auth


def password_auth(user: User, session: str | None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
    }
    if session is not None:
        auth["session"] = session
    return auth


def assert_uia_challenge(resp: Response, api_file: str, path_template: str) -> dict[str, Any]:
    """A 401 UIA response: schema-valid, offers m.login.password, carries a session."""
    assert resp.status == 401, f"expected a 401 UIA challenge, got {resp.describe()}"
    assert_matches_spec(api_file, path_template, resp.method, 401, resp.body)
    body: dict[str, Any] = resp.body
    stages = [flow["stages"] for flow in body["flows"]]
    assert ["m.login.password"] in stages, f"no single-stage m.login.password flow: {body}"
    assert isinstance(body.get("session"), str) and body["session"], f"no UIA session: {body}"
    return body


def with_uia(
    user: User,
    method: str,
    path: str,
    body: dict[str, Any],
    api_file: str,
    path_template: str,
) -> Response:
    """Send ``body`` without auth (expect a 401 challenge), then again with password auth."""
    first = user.client.request(method, path, body)
    challenge = assert_uia_challenge(first, api_file, path_template)
    return user.client.request(method, path, {**body, "auth": password_auth(user, challenge["session"])})


# --------------------------------------------------------------------------- errors


def assert_api_error(
    resp: Response,
    api_file: str,
    path_template: str,
    status: int | tuple[int, ...],
    errcode: str | tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """:func:`assert_error`, plus the operation's own schema when the spec documents that status."""
    body = assert_error(resp, status, errcode)
    if is_documented(api_file, path_template, resp.method, resp.status):
        assert_matches_spec(api_file, path_template, resp.method, resp.status, body)
    return body


# --------------------------------------------------------------------------- event schemas


@functools.cache
def event_schema_ref(name: str) -> str | None:
    path = spec_dir() / "data" / "event-schemas" / "schema" / f"{name}.yaml"
    return path.resolve().as_uri() + "#" if path.is_file() else None


def assert_event_schema(event: dict[str, Any], room_id: str | None = None) -> None:
    """Validate a client-format room event against its event schema, when the spec has one.

    Events from /sync carry no ``room_id``; pass it to validate them as full room events.
    Redacted events (``unsigned.redacted_because``) are skipped: their content is pruned.
    """
    etype = event.get("type")
    if not isinstance(etype, str) or "redacted_because" in (event.get("unsigned") or {}):
        return
    content = event.get("content") or {}
    names = [etype]
    if etype == "m.room.message" and isinstance(content.get("msgtype"), str):
        names.insert(0, f"{etype}${content['msgtype']}")
    for name in names:
        ref = event_schema_ref(name)
        if ref is not None:
            instance = event if room_id is None or "room_id" in event else {**event, "room_id": room_id}
            validate(ref, instance, f"{etype} event {event.get('event_id')}")
            return


def assert_events_schema(events: list[dict[str, Any]], room_id: str | None = None) -> None:
    for event in events:
        assert_event_schema(event, room_id)


# --------------------------------------------------------------------------- rooms and events

SEND = "/rooms/{roomId}/send/{eventType}/{txnId}"
STATE_KEY = "/rooms/{roomId}/state/{eventType}/{stateKey}"
MESSAGES = "/rooms/{roomId}/messages"


def new_txn_id() -> str:
    return f"compat-{secrets.token_hex(8)}"


def room_path(room_id: str, *tail: str) -> str:
    """``/_matrix/client/v3/rooms/{roomId}/tail...`` with every segment quoted."""
    return "/".join([f"{V3}/rooms", q(room_id), *(q(t) for t in tail)])


def require_room_version(user: User, version: str) -> None:
    """Skip the test unless the server advertises ``version`` in /capabilities (servers choose
    which room versions they support)."""
    resp = user.client.get(f"{V3}/capabilities")
    caps = assert_response_matches_spec(resp, "capabilities.yaml", "/capabilities")["capabilities"]
    available = caps.get("m.room_versions", {}).get("available", {})
    if version not in available:
        pytest.skip(f"room version {version} not supported by the server (available: {sorted(available)})")


def create_room(user: User, **body: Any) -> str:
    """POST /createRoom with ``body`` (checked against the request schema); returns the room id."""
    assert_request_matches_spec("create_room.yaml", "/createRoom", "POST", body)
    resp = user.client.post(f"{V3}/createRoom", body)
    return str(assert_response_matches_spec(resp, "create_room.yaml", "/createRoom")["room_id"])


def send_event(
    user: User,
    room_id: str,
    content: dict[str, Any],
    event_type: str = "m.room.message",
    txn_id: str | None = None,
) -> str:
    resp = user.client.put(room_path(room_id, "send", event_type, txn_id or new_txn_id()), content)
    return str(assert_response_matches_spec(resp, "room_send.yaml", SEND)["event_id"])


def send_text(user: User, room_id: str, text: str, txn_id: str | None = None) -> str:
    return send_event(user, room_id, {"msgtype": "m.text", "body": text}, txn_id=txn_id)


def put_state(user: User, room_id: str, event_type: str, content: dict[str, Any], state_key: str = "") -> str:
    resp = user.client.put(room_path(room_id, "state", event_type, state_key), content)
    return str(assert_response_matches_spec(resp, "room_state.yaml", STATE_KEY)["event_id"])


def get_state(user: User, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
    resp = user.client.get(room_path(room_id, "state", event_type, state_key))
    body: dict[str, Any] = assert_response_matches_spec(resp, "rooms.yaml", STATE_KEY)
    return body


def join_room(user: User, room_id_or_alias: str) -> str:
    """POST /join/{roomIdOrAlias}; returns the room id."""
    resp = user.client.post(f"{V3}/join/{q(room_id_or_alias)}", {})
    return str(assert_response_matches_spec(resp, "joining.yaml", "/join/{roomIdOrAlias}")["room_id"])


def invite_user(inviter: User, room_id: str, user_id: str, **extra: Any) -> None:
    resp = inviter.client.post(room_path(room_id, "invite"), {"user_id": user_id, **extra})
    # inviting.yaml keys its path with a trailing space (to differ from the 3PID invite in
    # third_party_membership.yaml), so the template carries it too.
    assert_response_matches_spec(resp, "inviting.yaml", "/rooms/{roomId}/invite ")


def leave_room(user: User, room_id: str) -> None:
    assert_response_matches_spec(
        user.client.post(room_path(room_id, "leave"), {}), "leaving.yaml", "/rooms/{roomId}/leave"
    )


def get_messages(user: User, room_id: str, **params: Any) -> dict[str, Any]:
    """GET /rooms/{roomId}/messages (``filter`` may be a dict); validated against the spec."""
    if isinstance(params.get("filter"), dict):
        params["filter"] = json.dumps(params["filter"], separators=(",", ":"))
    params.setdefault("dir", "b")
    resp = user.client.get(room_path(room_id, "messages"), params=params)
    body: dict[str, Any] = assert_response_matches_spec(resp, "message_pagination.yaml", MESSAGES)
    assert_events_schema(body["chunk"])
    assert_events_schema(body.get("state", []))
    return body


def paginate(user: User, room_id: str, **params: Any) -> list[dict[str, Any]]:
    """Follow ``end`` tokens of /messages until the server stops sending one; all chunks joined."""
    events: list[dict[str, Any]] = []
    for _ in range(1000):
        body = get_messages(user, room_id, **params)
        events.extend(body["chunk"])
        if "end" not in body or (not body["chunk"] and body.get("end") == params.get("from")):
            return events
        params["from"] = body["end"]
    raise AssertionError("/messages pagination did not terminate")


# --------------------------------------------------------------------------- sync


def sync_once(user: User, **params: Any) -> dict[str, Any]:
    """One GET /sync (``filter`` may be a dict, sent inline); the response is validated."""
    if isinstance(params.get("filter"), dict):
        params["filter"] = json.dumps(params["filter"], separators=(",", ":"))
    resp = user.client.get(f"{V3}/sync", params=params)
    body: dict[str, Any] = assert_response_matches_spec(resp, "sync.yaml", "/sync")
    for section in ("join", "leave"):
        for room_id, room in body.get("rooms", {}).get(section, {}).items():
            assert_events_schema((room.get("timeline") or {}).get("events", []), room_id)
            assert_events_schema((room.get("state") or {}).get("events", []), room_id)
    return body


def joined_room(body: dict[str, Any], room_id: str) -> dict[str, Any] | None:
    room: dict[str, Any] | None = body.get("rooms", {}).get("join", {}).get(room_id)
    return room


def timeline_events(body: dict[str, Any], room_id: str, section: str = "join") -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get(section, {}).get(room_id) or {}
    events: list[dict[str, Any]] = (room.get("timeline") or {}).get("events", [])
    return events


@dataclass
class SyncStream:
    """Incremental /sync for one user: remembers ``next_batch``; every response is validated.

    Waiting is done with long-polling syncs (``timeout``), never with sleeps; ``deadline`` only
    bounds how long a test waits for something that never comes.
    """

    user: User
    filter: dict[str, Any] | str | None = None
    since: str | None = None
    responses: list[dict[str, Any]] = field(default_factory=list)

    def sync(self, timeout_ms: int = 0, **params: Any) -> dict[str, Any]:
        if self.filter is not None:
            params.setdefault("filter", self.filter)
        if self.since is not None:
            params.setdefault("since", self.since)
        body = sync_once(self.user, timeout=timeout_ms, **params)
        self.since = body["next_batch"]
        self.responses.append(body)
        return body

    def until(
        self,
        predicate: Callable[[dict[str, Any]], Any],
        timeout_ms: int = 5000,
        deadline: float = 60.0,
        **params: Any,
    ) -> Any:
        """Sync until ``predicate(response)`` is truthy; returns that truthy value."""
        end = time.monotonic() + deadline
        while True:
            body = self.sync(timeout_ms=timeout_ms, **params)
            found = predicate(body)
            if found:
                return found
            if time.monotonic() > end:
                raise AssertionError(f"sync: condition not met within {deadline:.0f}s; last: {body}")

    def wait_for_event(self, room_id: str, event_id: str, section: str = "join") -> dict[str, Any]:
        """Sync until ``event_id`` shows up in the room's timeline; returns the event."""

        def find(body: dict[str, Any]) -> dict[str, Any] | None:
            for ev in timeline_events(body, room_id, section):
                if ev.get("event_id") == event_id:
                    return ev
            return None

        event: dict[str, Any] = self.until(find)
        return event
