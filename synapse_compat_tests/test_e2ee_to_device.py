"""Send-to-device messaging: PUT /sendToDevice/{eventType}/{txnId} and /sync `to_device`
(to_device.yaml, send_to_device.md)."""

from __future__ import annotations

import secrets
from typing import Any

from .client import V3, q
from .harness import Homeserver, SyncStream, User, sync_once
from .spec_schema import assert_error, assert_request_matches_spec, assert_response_matches_spec

SEND = "/sendToDevice/{eventType}/{txnId}"
EVENT_TYPE = "org.example.compat.to_device"


def _send(
    sender: User, messages: dict[str, Any], txn_id: str | None = None, event_type: str = EVENT_TYPE
) -> None:
    body = {"messages": messages}
    assert_request_matches_spec("to_device.yaml", SEND, "PUT", body)
    path = f"{V3}/sendToDevice/{q(event_type)}/{q(txn_id or secrets.token_hex(8))}"
    assert_response_matches_spec(sender.client.put(path, body), "to_device.yaml", SEND)


def _events(body: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = (body.get("to_device") or {}).get("events", [])
    for event in events:
        assert isinstance(event.get("sender"), str) and isinstance(event.get("type"), str), event
        assert isinstance(event.get("content"), dict), event
    return [e for e in events if e["type"] == EVENT_TYPE]


def _collect(stream: SyncStream, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    def more(body: dict[str, Any]) -> bool:
        got.extend(_events(body))
        return len(got) >= count

    stream.until(more)
    return got


def test_send_to_device_delivered_once_acknowledged(user: User, other_user: User) -> None:
    _send(user, {other_user.user_id: {other_user.device_id: {"n": 1}}})
    first = sync_once(other_user)
    events = _events(first)
    assert events == [{"sender": user.user_id, "type": EVENT_TYPE, "content": {"n": 1}}]
    # Not acknowledged yet: an initial sync again still has it.
    assert _events(sync_once(other_user, timeout=1)) == events
    # Syncing with the first next_batch acknowledges it: gone for good.
    second = sync_once(other_user, since=first["next_batch"])
    assert _events(second) == []
    assert _events(sync_once(other_user, timeout=2)) == []
    assert _events(sync_once(other_user, since=second["next_batch"])) == []


def test_send_to_all_devices(hs: Homeserver, user: User, other_user: User) -> None:
    second = hs.login_ok(other_user)
    _send(user, {other_user.user_id: {"*": {"all": True}}})
    for device in (other_user, second):
        assert [e["content"] for e in _events(sync_once(device))] == [{"all": True}]
    # The sender's own devices get nothing.
    assert _events(sync_once(user)) == []


def test_txn_id_is_idempotent(user: User, other_user: User) -> None:
    messages = {other_user.user_id: {other_user.device_id: {"n": "once"}}}
    _send(user, messages, txn_id="same-txn")
    _send(user, messages, txn_id="same-txn")
    _send(user, {other_user.user_id: {other_user.device_id: {"n": "twice"}}}, txn_id="other-txn")
    contents = [e["content"] for e in _events(sync_once(other_user))]
    assert contents == [{"n": "once"}, {"n": "twice"}]


def test_long_poll_wakes_on_to_device(user: User, other_user: User) -> None:
    stream = SyncStream(other_user)
    stream.sync()
    _send(user, {other_user.user_id: {other_user.device_id: {"wake": "up"}}})
    assert [e["content"] for e in _collect(stream, 1)] == [{"wake": "up"}]


def test_large_queue_is_delivered_in_batches(user: User, other_user: User) -> None:
    total = 130
    for i in range(total):
        _send(user, {other_user.user_id: {other_user.device_id: {"i": i}}})
    stream = SyncStream(other_user)
    first = stream.sync()
    batch = _events(first)
    assert 0 < len(batch) < total, "the server should limit to-device messages per sync"
    got = batch + _collect(stream, total - len(batch))
    assert [e["content"]["i"] for e in got] == list(range(total))


def test_unknown_devices_and_users_are_ignored(user: User, other_user: User) -> None:
    nobody = f"@nobody-{user.localpart}:{user.server_name}"
    _send(user, {other_user.user_id: {"NOSUCHDEVICE": {"x": 1}}, nobody: {"*": {"x": 2}}})
    assert _events(sync_once(other_user)) == []


def test_send_to_device_bad_requests(user: User) -> None:
    path = f"{V3}/sendToDevice/{EVENT_TYPE}/{secrets.token_hex(4)}"
    assert_error(user.client.put(path, {}), 400, ("M_MISSING_PARAM", "M_BAD_JSON"))
    assert_error(user.client.put(path, data=b"{nope"), 400, "M_NOT_JSON")
    assert_error(user.client.put(path, {"messages": {}}, access_token=None), 401, "M_MISSING_TOKEN")
