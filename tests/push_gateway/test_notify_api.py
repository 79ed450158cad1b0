"""The notify API's validation and routing, in process (no push service is reached)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from bridges.push_gateway.config import parse_config
from bridges.push_gateway.server import create_app, mount

from .fakes import ec_private_pem

NOTIFY = "/_matrix/push/v1/notify"


def webpush_app(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    key_file = tmp_path / "vapid.pem"
    key_file.write_bytes(ec_private_pem(ec.generate_private_key(ec.SECP256R1())))
    return {
        "type": "webpush",
        "vapid_private_key": str(key_file),
        "vapid_contact_email": "ops@example.org",
        **extra,
    }


@pytest.fixture
async def gateway(aiohttp_client: Any, tmp_path: Path) -> Any:
    config = parse_config(
        {"apps": {"org.example.web": webpush_app(tmp_path), "org.example.*": webpush_app(tmp_path)}}
    )
    return await aiohttp_client(create_app(config))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Expected JSON request body"),
        (b"\xff\xfe", "Expected JSON request body"),
        (b"[]", "Invalid notification: expecting object in 'notification' key"),
        (b"{}", "Invalid notification: expecting object in 'notification' key"),
        (b'{"notification": "x"}', "Invalid notification: expecting object in 'notification' key"),
        (b'{"notification": {}}', "Expected list in 'devices' key"),
        (b'{"notification": {"devices": {}}}', "Expected list in 'devices' key"),
        (b'{"notification": {"devices": []}}', "No devices in notification"),
        (b'{"notification": {"devices": [{"app_id": "a"}]}}', "Device with missing or non-string pushkey"),
        (
            b'{"notification": {"devices": [{"app_id": "a", "pushkey": ""}]}}',
            "Device with missing or non-string pushkey",
        ),
        (b'{"notification": {"devices": [{"pushkey": "k"}]}}', "Device with missing or non-string app_id"),
        (
            b'{"notification": {"devices": [{"pushkey": "k", "app_id": 3}]}}',
            "Device with missing or non-string app_id",
        ),
        (b'{"notification": {"devices": ["k"]}}', "Invalid device: expected an object"),
        (
            b'{"notification": {"devices": [{"pushkey": "k", "app_id": "a"}], "counts": {"unread": "2"}}}',
            "unread is of invalid type",
        ),
        (
            b'{"notification": {"devices": [{"pushkey": "k", "app_id": "a", "data": []}]}}',
            "data is of invalid type",
        ),
    ],
)
async def test_malformed_bodies_get_400_with_a_message(gateway: Any, body: bytes, message: str) -> None:
    resp = await gateway.post(NOTIFY, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    answer = await resp.json()
    assert answer["error"] == message
    assert answer["errcode"].startswith("M_")


async def test_unknown_app_id_is_rejected(gateway: Any) -> None:
    body = {
        "notification": {
            "event_id": "$e",
            "room_id": "!r:example.org",
            "devices": [
                {"app_id": "com.unknown.app", "pushkey": "key-1"},
                {"app_id": "com.unknown.other", "pushkey": "key-2"},
            ],
        }
    }
    resp = await gateway.post(NOTIFY, json=body)
    assert resp.status == 200
    assert await resp.json() == {"rejected": ["key-1", "key-2"]}


async def test_exact_app_id_beats_glob_and_incomplete_subscription_is_rejected(gateway: Any) -> None:
    # Both apps would handle org.example.web by glob; the exact one is chosen, so this is not
    # "ambiguous". The pusher lacks endpoint/auth, which the webpush pushkin rejects.
    body = {"notification": {"devices": [{"app_id": "org.example.web", "pushkey": "p", "data": {}}]}}
    resp = await gateway.post(NOTIFY, json=body)
    assert resp.status == 200
    assert await resp.json() == {"rejected": ["p"]}


async def test_ambiguous_glob_is_rejected(aiohttp_client: Any, tmp_path: Path) -> None:
    config = parse_config({"apps": {"org.*": webpush_app(tmp_path), "*.web": webpush_app(tmp_path)}})
    client = await aiohttp_client(create_app(config))
    body = {"notification": {"devices": [{"app_id": "org.web", "pushkey": "amb", "data": {}}]}}
    resp = await client.post(NOTIFY, json=body)
    assert await resp.json() == {"rejected": ["amb"]}


async def test_health_and_wrong_method(gateway: Any) -> None:
    assert (await gateway.get("/health")).status == 200
    assert (await gateway.get(NOTIFY)).status == 405


async def test_body_size_is_capped(gateway: Any) -> None:
    resp = await gateway.post(NOTIFY, data=b"x" * (600 * 1024))
    assert resp.status == 413


async def test_mounted_in_another_application(aiohttp_client: Any, tmp_path: Path) -> None:
    """The embedded mode: the gateway's routes served by a host application (e.g. the homeserver)."""

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"host": True})

    host = web.Application()
    host.router.add_get("/_matrix/client/versions", hello)
    mount(host, parse_config({"apps": {"org.example.web": webpush_app(tmp_path)}}))
    client = await aiohttp_client(host)
    assert (await (await client.get("/_matrix/client/versions")).json()) == {"host": True}
    resp = await client.post(NOTIFY, json={"notification": {"devices": [{"app_id": "x.y", "pushkey": "k"}]}})
    assert await resp.json() == {"rejected": ["k"]}
    resp = await client.post(NOTIFY, json={"notification": {"devices": []}})
    assert resp.status == 400


async def test_metrics_use_sygnal_names(gateway: Any) -> None:
    from prometheus_client import REGISTRY, generate_latest

    await gateway.post(NOTIFY, json={"notification": {"devices": [{"app_id": "x", "pushkey": "k"}]}})
    text = generate_latest(REGISTRY).decode()
    for family in (
        "sygnal_notifications_received_total",
        "sygnal_notifications_devices_received_total",
        'sygnal_pushgateway_status_codes_total{code="200"}',
        "sygnal_notify_time_bucket",
    ):
        assert family in text
