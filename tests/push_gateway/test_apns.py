"""APNs delivery over HTTP/2 (TLS, ALPN h2) to a local fake that checks the provider JWT."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bridges.push_gateway.config import parse_config
from bridges.push_gateway.server import create_app

from .fakes import H2Server, ec_private_pem, self_signed_cert

NOTIFY = "/_matrix/push/v1/notify"
TOKEN_BYTES = bytes(range(32))
PUSHKEY = base64.b64encode(TOKEN_BYTES).decode()  # what Element iOS registers
DEAD = base64.b64encode(b"\xde\xad" * 16).decode()
BAD = base64.b64encode(b"\xba\xd0" * 16).decode()


class FakeApns:
    def __init__(self, public_key: Any) -> None:
        self.public_key = public_key

    async def respond(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any] | None]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme != "bearer":
            return 403, {"reason": "MissingProviderToken"}
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"])
        except jwt.PyJWTError:
            return 403, {"reason": "InvalidProviderToken"}
        if header.get("kid") != "KEYID1234" or claims.get("iss") != "TEAMID5678" or "iat" not in claims:
            return 403, {"reason": "InvalidProviderToken"}
        if headers.get("apns-topic") != "org.example.ios":
            return 400, {"reason": "TopicDisallowed"} if headers.get("apns-topic") else {
                "reason": "MissingTopic"
            }
        device = headers[":path"].rsplit("/", 1)[1]
        if device == (b"\xde\xad" * 16).hex():
            return 410, {"reason": "Unregistered", "timestamp": 1}
        if device == (b"\xba\xd0" * 16).hex():
            return 400, {"reason": "BadDeviceToken"}
        return 200, None


@pytest.fixture
async def apns(tmp_path: Path) -> AsyncIterator[tuple[H2Server, Path, Path]]:
    key = ec.generate_private_key(ec.SECP256R1())
    p8 = tmp_path / "AuthKey_KEYID1234.p8"
    p8.write_bytes(ec_private_pem(key))
    cert, cert_key = self_signed_cert(tmp_path)
    server = H2Server(cert, cert_key, FakeApns(key.public_key()).respond)
    await server.start()
    yield server, p8, cert
    await server.close()


def gateway_config(server: H2Server, p8: Path, cert: Path, **extra: Any) -> Any:
    app = {
        "type": "apns",
        "keyfile": str(p8),
        "key_id": "KEYID1234",
        "team_id": "TEAMID5678",
        "topic": "org.example.ios",
        "endpoint": server.url,
        "ca_file": str(cert),
        **extra,
    }
    return parse_config({"apps": {"org.example.ios": app}})


def device(pushkey: str = PUSHKEY, **data: Any) -> dict[str, Any]:
    return {"app_id": "org.example.ios", "pushkey": pushkey, "data": data}


async def test_full_notification_over_http2(aiohttp_client: Any, apns: tuple[H2Server, Path, Path]) -> None:
    server, p8, cert = apns
    client = await aiohttp_client(create_app(gateway_config(server, p8, cert)))
    notification = {
        "event_id": "$ev",
        "room_id": "!room:example.org",
        "type": "m.room.message",
        "sender": "@bob:example.org",
        "sender_display_name": "Bob",
        "room_name": "Lunch",
        "content": {"msgtype": "m.text", "body": "hello"},
        "counts": {"unread": 2, "missed_calls": 1},
        "devices": [device(default_payload={"aps": {"sound": "default"}, "extra": 1})],
    }
    resp = await client.post(NOTIFY, json={"notification": notification})
    assert resp.status == 200
    assert await resp.json() == {"rejected": []}
    assert server.protocols == ["h2"]
    [(headers, body)] = server.requests
    assert headers[":method"] == "POST"
    assert headers[":path"] == f"/3/device/{TOKEN_BYTES.hex()}"
    assert headers["apns-topic"] == "org.example.ios"
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-id"]
    assert json.loads(body) == {
        "aps": {
            "sound": "default",
            "alert": {"loc-key": "MSG_FROM_USER_IN_ROOM_WITH_CONTENT", "loc-args": ["Bob", "Lunch", "hello"]},
            "thread-id": "!room:example.org",
            "badge": 3,
        },
        "extra": 1,
        "room_id": "!room:example.org",
        "event_id": "$ev",
    }


async def test_event_id_only_and_counts_only(aiohttp_client: Any, apns: tuple[H2Server, Path, Path]) -> None:
    server, p8, cert = apns
    client = await aiohttp_client(create_app(gateway_config(server, p8, cert)))
    body = {
        "notification": {
            "event_id": "$ev",
            "room_id": "!room:example.org",
            "prio": "low",
            "counts": {"unread": 4},
            "devices": [device()],
        }
    }
    resp = await client.post(NOTIFY, json=body)
    assert await resp.json() == {"rejected": []}
    headers, payload = server.requests[-1]
    assert headers["apns-priority"] == "5"
    assert json.loads(payload) == {
        "room_id": "!room:example.org",
        "event_id": "$ev",
        "unread_count": 4,
        "aps": {"mutable-content": 1, "thread-id": "!room:example.org", "badge": 4},
    }

    # Counts only (the homeserver clearing the badge): just the badge.
    body = {"notification": {"counts": {"unread": 0}, "devices": [device()]}}
    resp = await client.post(NOTIFY, json=body)
    assert await resp.json() == {"rejected": []}
    assert json.loads(server.requests[-1][1]) == {"aps": {"badge": 0}}

    # Nothing to show and no badge: nothing is sent.
    sent = len(server.requests)
    body = {"notification": {"type": "m.room.member", "membership": "join", "devices": [device()]}}
    assert await (await client.post(NOTIFY, json=body)).json() == {"rejected": []}
    assert len(server.requests) == sent


async def test_dead_tokens_are_rejected(aiohttp_client: Any, apns: tuple[H2Server, Path, Path]) -> None:
    server, p8, cert = apns
    client = await aiohttp_client(create_app(gateway_config(server, p8, cert)))
    body = {
        "notification": {
            "event_id": "$ev",
            "room_id": "!r:x",
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "x"},
            "devices": [device(DEAD), device(), device(BAD), device("not base64!")],
        }
    }
    resp = await client.post(NOTIFY, json=body)
    assert resp.status == 200
    assert await resp.json() == {"rejected": [DEAD, BAD, "not base64!"]}
    assert len(server.requests) == 3


async def test_wrong_signing_key_is_a_dispatch_failure(
    aiohttp_client: Any, apns: tuple[H2Server, Path, Path], tmp_path: Path
) -> None:
    server, _, cert = apns
    other = tmp_path / "other.p8"
    other.write_bytes(ec_private_pem(ec.generate_private_key(ec.SECP256R1())))
    client = await aiohttp_client(create_app(gateway_config(server, other, cert)))
    body = {"notification": {"counts": {"unread": 1}, "devices": [device()]}}
    resp = await client.post(NOTIFY, json=body)
    assert resp.status == 502


async def test_long_message_is_truncated_to_fit(
    aiohttp_client: Any, apns: tuple[H2Server, Path, Path]
) -> None:
    server, p8, cert = apns
    client = await aiohttp_client(create_app(gateway_config(server, p8, cert, push_type="alert")))
    body = {
        "notification": {
            "event_id": "$ev",
            "type": "m.room.message",
            "sender": "@bob:example.org",
            "content": {"msgtype": "m.text", "body": "é" * 5000},
            "devices": [device()],
        }
    }
    resp = await client.post(NOTIFY, json=body)
    assert await resp.json() == {"rejected": []}
    payload = server.requests[-1][1]
    assert len(payload) <= 4096
    args = json.loads(payload)["aps"]["alert"]["loc-args"]
    assert args[0] == "@bob:example.org" and args[1].startswith("ééé") and args[1].endswith("…")
