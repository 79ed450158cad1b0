"""Web Push delivery to a local push service that decrypts the message and checks the VAPID JWT."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import http_ece
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bridges.push_gateway.config import parse_config
from bridges.push_gateway.server import create_app

from .fakes import Subscription, b64url, b64url_decode, ec_private_pem, start_http

NOTIFY = "/_matrix/push/v1/notify"


class PushService:
    """A Web Push endpoint (like a browser vendor's): 201 on success, or a scripted status."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.status: dict[str, int] = {}
        self.release = asyncio.Event()
        self.hanging = asyncio.Event()
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "hang":
            self.hanging.set()
            await self.release.wait()  # a push service that never answers
        self.received.append((name, dict(request.headers), await request.read()))
        return web.Response(status=self.status.get(name, 201))


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    service = PushService()
    app = web.Application()
    app.router.add_post("/push/{name}", service.handle)
    runner, service.base = await start_http(app)
    yield service
    service.release.set()
    await runner.cleanup()


@pytest.fixture
def vapid_key(tmp_path: Path) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "vapid_private.pem"
    path.write_bytes(ec_private_pem(key))
    return path, key


def make_gateway_config(vapid_file: Path, **app: Any) -> Any:
    cfg = {"type": "webpush", "vapid_private_key": str(vapid_file), "vapid_contact_email": "ops@example.org"}
    cfg.update(app)
    return parse_config({"apps": {"org.example.web": cfg}})


def device(sub: Subscription, **data: Any) -> dict[str, Any]:
    return {
        "app_id": "org.example.web",
        "pushkey": sub.p256dh,
        "data": {"endpoint": sub.endpoint, "auth": b64url(sub.auth), **data},
    }


def decrypt(sub: Subscription, body: bytes) -> dict[str, Any]:
    plain = http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm")
    return json.loads(plain)  # type: ignore[no-any-return]


def check_vapid(headers: dict[str, str], audience: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    scheme, _, params = headers["Authorization"].partition(" ")
    assert scheme == "vapid"
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    server_key = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert b64url_decode(parts["k"]) == server_key  # k is the application server key
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(parts["k"]))
    claims = jwt.decode(parts["t"], public, algorithms=["ES256"], audience=audience)
    assert claims["sub"] == "mailto:ops@example.org"
    return claims  # type: ignore[no-any-return]


async def test_delivers_encrypted_message_with_vapid(
    aiohttp_client: Any, push_service: PushService, vapid_key: tuple[Path, Any]
) -> None:
    client = await aiohttp_client(create_app(make_gateway_config(vapid_key[0], ttl=600)))
    sub = Subscription(f"{push_service.base}/push/alice")
    notification = {
        "event_id": "$event:example.org",
        "room_id": "!room:example.org",
        "type": "m.room.message",
        "sender": "@bob:example.org",
        "sender_display_name": "Bob",
        "room_name": "Lunch",
        "prio": "high",
        "content": {"msgtype": "m.text", "body": "hello there", "formatted_body": "<b>hello</b>"},
        "counts": {"unread": 3, "missed_calls": 1},
        "devices": [device(sub, default_payload={"account": "alice"})],
    }
    resp = await client.post(NOTIFY, json={"notification": notification})
    assert resp.status == 200
    assert await resp.json() == {"rejected": []}

    [(name, headers, body)] = push_service.received
    assert name == "alice"
    assert headers["Content-Encoding"] == "aes128gcm"
    assert headers["TTL"] == "600"
    assert headers["Urgency"] == "normal"
    assert "Topic" not in headers
    check_vapid(headers, push_service.base, vapid_key[1])
    payload = decrypt(sub, body)
    assert payload == {
        "account": "alice",
        "event_id": "$event:example.org",
        "room_id": "!room:example.org",
        "type": "m.room.message",
        "sender": "@bob:example.org",
        "sender_display_name": "Bob",
        "room_name": "Lunch",
        "content": {"msgtype": "m.text", "body": "hello there"},
        "unread": 3,
        "missed_calls": 1,
    }


async def test_low_priority_topic_and_events_only(
    aiohttp_client: Any, push_service: PushService, vapid_key: tuple[Path, Any]
) -> None:
    client = await aiohttp_client(create_app(make_gateway_config(vapid_key[0])))
    sub = Subscription(f"{push_service.base}/push/bob")
    dev = device(sub, events_only=True, only_last_per_room=True)
    # Counts only (no event): dropped for an events_only pusher, and not rejected either.
    resp = await client.post(NOTIFY, json={"notification": {"counts": {"unread": 0}, "devices": [dev]}})
    assert await resp.json() == {"rejected": []}
    assert push_service.received == []

    body = {"notification": {"event_id": "$e", "room_id": "!r:x", "prio": "low", "devices": [dev]}}
    resp = await client.post(NOTIFY, json=body)
    assert await resp.json() == {"rejected": []}
    [(_, headers, data)] = push_service.received
    assert headers["Urgency"] == "low"
    assert headers["TTL"] == str(15 * 60)  # Sygnal's default
    assert len(headers["Topic"]) == 32
    assert decrypt(sub, data) == {"event_id": "$e", "room_id": "!r:x"}


@pytest.mark.parametrize("status", [404, 410])
async def test_gone_subscription_is_rejected(
    aiohttp_client: Any, push_service: PushService, vapid_key: tuple[Path, Any], status: int
) -> None:
    client = await aiohttp_client(create_app(make_gateway_config(vapid_key[0])))
    push_service.status["gone"] = status
    gone, ok = Subscription(f"{push_service.base}/push/gone"), Subscription(f"{push_service.base}/push/ok")
    body = {"notification": {"event_id": "$e", "devices": [device(gone), device(ok)]}}
    resp = await client.post(NOTIFY, json=body)
    assert resp.status == 200
    assert await resp.json() == {"rejected": [gone.p256dh]}
    assert sorted(r[0] for r in push_service.received) == ["gone", "ok"]


async def test_push_service_error_is_not_a_rejection(
    aiohttp_client: Any, push_service: PushService, vapid_key: tuple[Path, Any]
) -> None:
    client = await aiohttp_client(create_app(make_gateway_config(vapid_key[0])))
    push_service.status["bad"] = 400
    sub = Subscription(f"{push_service.base}/push/bad")
    resp = await client.post(NOTIFY, json={"notification": {"event_id": "$e", "devices": [device(sub)]}})
    assert await resp.json() == {"rejected": []}


async def test_hanging_push_service_is_timed_out(
    aiohttp_client: Any, push_service: PushService, vapid_key: tuple[Path, Any]
) -> None:
    client = await aiohttp_client(create_app(make_gateway_config(vapid_key[0], request_timeout=0.5)))
    sub = Subscription(f"{push_service.base}/push/hang")
    resp = await client.post(NOTIFY, json={"notification": {"event_id": "$e", "devices": [device(sub)]}})
    # Not the pushkey's fault: a 502 so the homeserver retries later, nothing rejected.
    assert resp.status == 502
    assert "error" in await resp.json()


async def test_allowed_endpoints_blocks_without_rejecting(
    aiohttp_client: Any, push_service: PushService, vapid_key: tuple[Path, Any]
) -> None:
    config = make_gateway_config(
        vapid_key[0], allowed_endpoints=["updates.push.services.mozilla.com", "*.example"]
    )
    client = await aiohttp_client(create_app(config))
    sub = Subscription(f"{push_service.base}/push/blocked")
    resp = await client.post(NOTIFY, json={"notification": {"event_id": "$e", "devices": [device(sub)]}})
    assert await resp.json() == {"rejected": []}
    assert push_service.received == []

    config = make_gateway_config(vapid_key[0], allowed_endpoints=["127.0.0.1:*"])
    client = await aiohttp_client(create_app(config))
    resp = await client.post(NOTIFY, json={"notification": {"event_id": "$e", "devices": [device(sub)]}})
    assert await resp.json() == {"rejected": []}
    assert [r[0] for r in push_service.received] == ["blocked"]


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"auth": "AAAA"},
        {"endpoint": "ftp://x/y", "auth": "AAAA"},
        {"endpoint": "https://push.example/x"},
    ],
)
async def test_incomplete_subscription_is_rejected(
    aiohttp_client: Any, vapid_key: tuple[Path, Any], data: dict[str, Any] | None
) -> None:
    client = await aiohttp_client(create_app(make_gateway_config(vapid_key[0])))
    dev: dict[str, Any] = {"app_id": "org.example.web", "pushkey": "BKEY"}
    if data is not None:
        dev["data"] = data
    resp = await client.post(NOTIFY, json={"notification": {"event_id": "$e", "devices": [dev]}})
    assert await resp.json() == {"rejected": ["BKEY"]}


async def test_invalid_p256dh_is_rejected(
    aiohttp_client: Any, push_service: PushService, vapid_key: Any
) -> None:
    client = await aiohttp_client(create_app(make_gateway_config(vapid_key[0])))
    dev = {
        "app_id": "org.example.web",
        "pushkey": "not-a-key",
        "data": {"endpoint": push_service.base + "/push/x", "auth": "AAAAAAAAAAAAAAAAAAAAAA"},
    }
    resp = await client.post(NOTIFY, json={"notification": {"event_id": "$e", "devices": [dev]}})
    assert await resp.json() == {"rejected": ["not-a-key"]}
    assert push_service.received == []


async def test_inflight_request_limit(
    aiohttp_client: Any, push_service: PushService, vapid_key: tuple[Path, Any]
) -> None:
    from prometheus_client import REGISTRY

    def drops() -> float:
        value = REGISTRY.get_sample_value(
            "sygnal_inflight_request_limit_drop_total", {"pushkin": "org.example.web"}
        )
        return value or 0.0

    before = drops()
    config = make_gateway_config(vapid_key[0], inflight_request_limit=1)
    client = await aiohttp_client(create_app(config))
    hang = Subscription(f"{push_service.base}/push/hang")
    first = asyncio.ensure_future(
        client.post(NOTIFY, json={"notification": {"event_id": "$1", "devices": [device(hang)]}})
    )
    await push_service.hanging.wait()  # the first push is in flight
    ok = Subscription(f"{push_service.base}/push/ok")
    resp = await client.post(NOTIFY, json={"notification": {"event_id": "$2", "devices": [device(ok)]}})
    assert resp.status == 502
    assert drops() == before + 1
    push_service.release.set()
    assert (await first).status == 200
