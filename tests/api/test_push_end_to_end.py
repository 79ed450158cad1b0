"""End to end: a message on our homeserver reaches a browser's Web Push service through our own
push gateway (bridges/push_gateway), encrypted for the subscription and signed with VAPID; the
badge goes to 0 after reading; a subscription the push service says is gone removes the pusher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridges.push_gateway.server import create_app as create_gateway
from homeserver.app import create_app_from_config
from homeserver.config.errors import ConfigError
from homeserver.core.clock import FakeClock

from ..conftest import make_config, services_of
from ..push_gateway import test_apns as apns_tests
from ..push_gateway import test_fcm as fcm
from ..push_gateway import test_webpush as webpush
from ..push_gateway.fakes import Subscription, b64url
from ..push_gateway.test_webpush import PushService, check_vapid, decrypt, make_gateway_config
from .compliance_helpers import User
from .push_helpers import NOTIFY, dm, list_pushers, read_up_to, set_pusher, settle

# The gateway tests' local Web Push service and VAPID key, as fixtures here too.
push_service = webpush.push_service
vapid_key = webpush.vapid_key
google = fcm.google
apns = apns_tests.apns


async def test_message_arrives_as_decrypted_web_push(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, push_service: PushService, vapid_key: Any
) -> None:
    gateway = await aiohttp_server(create_gateway(make_gateway_config(vapid_key[0])))
    config = make_config(tmp_path, ip_range_whitelist=["127.0.0.0/8"])
    client = await aiohttp_client(create_app_from_config(config, clock=FakeClock()))
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    sub = Subscription(f"{push_service.base}/push/bob")
    await set_pusher(
        bob,
        {
            "kind": "http",
            "app_id": "org.example.web",
            "pushkey": sub.p256dh,
            "app_display_name": "Web",
            "device_display_name": "Firefox",
            "lang": "ko",
            "data": {
                "url": f"http://127.0.0.1:{gateway.port}{NOTIFY}",
                "endpoint": sub.endpoint,
                "auth": b64url(sub.auth),
            },
        },
    )
    event_id = await alice.say(room, "가정통신문이 도착했습니다")
    await settle(services)

    [(name, headers, body)] = push_service.received
    assert name == "bob" and headers["Urgency"] == "normal"  # Sygnal: prio high -> normal
    check_vapid(headers, push_service.base, vapid_key[1])
    payload = decrypt(sub, body)
    assert payload["event_id"] == event_id and payload["room_id"] == room
    assert payload["content"]["body"] == "가정통신문이 도착했습니다"
    assert payload["sender_display_name"] == "alice" and payload["unread"] == 1

    await read_up_to(bob, room, event_id)  # read on another device: the badge goes to 0
    await settle(services)
    assert decrypt(sub, push_service.received[1][2]) == {"unread": 0}

    push_service.status["bob"] = 410  # the browser unsubscribed
    await alice.say(room, "again")
    await settle(services)
    assert await list_pushers(bob) == []


async def test_embedded_gateway_serves_the_homeservers_own_pushers(
    aiohttp_client: Any, tmp_path: Path, push_service: PushService, vapid_key: Any
) -> None:
    """`push_gateway.enabled`: one process is homeserver and gateway."""
    apps = {
        "org.example.web": {
            "type": "webpush",
            "vapid_private_key": str(vapid_key[0]),
            "vapid_contact_email": "ops@example.org",
        }
    }
    config = make_config(
        tmp_path, ip_range_whitelist=["127.0.0.0/8"], push_gateway={"enabled": True, "apps": apps}
    )
    client = await aiohttp_client(create_app_from_config(config, clock=FakeClock()))
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    sub = Subscription(f"{push_service.base}/push/bob")
    data = {
        "url": f"http://127.0.0.1:{client.port}{NOTIFY}",
        "endpoint": sub.endpoint,
        "auth": b64url(sub.auth),
    }
    body = {
        "kind": "http",
        "app_id": "org.example.web",
        "pushkey": sub.p256dh,
        "app_display_name": "Web",
        "device_display_name": "Firefox",
        "lang": "ko",
        "data": data,
    }
    await set_pusher(bob, body)
    event_id = await alice.say(room, "한 프로세스로 충분합니다")
    await settle(services)
    [(_name, _headers, payload)] = push_service.received
    assert decrypt(sub, payload)["event_id"] == event_id


def test_embedded_gateway_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="push_gateway"):
        make_config(tmp_path, push_gateway={"enabled": True, "config_file": "x.yaml", "apps": {}})
    config = make_config(tmp_path, push_gateway={"enabled": True, "apps": {"a": {"type": "nope"}}})
    with pytest.raises(ConfigError, match="unknown pushkin type"):
        create_app_from_config(config)


async def test_android_event_id_only_pusher_through_fcm(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, google: tuple[fcm.FakeGoogle, Path]
) -> None:
    """Element Android's pusher (event_id_only) through our gateway to a local FCM v1 that checks
    the OAuth2 bearer token; the token FCM says is unregistered removes the pusher."""
    fake, account_file = google
    gateway = await aiohttp_server(create_gateway(fcm.gateway_config(fake, account_file)))
    config = make_config(tmp_path, ip_range_whitelist=["127.0.0.0/8"])
    client = await aiohttp_client(create_app_from_config(config, clock=FakeClock()))
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    url = f"http://127.0.0.1:{gateway.port}{NOTIFY}"
    body = {
        "kind": "http",
        "app_id": "im.example.android",
        "pushkey": "fcm-token-bob",
        "app_display_name": "Element",
        "device_display_name": "Galaxy",
        "lang": "ko",
        "data": {"url": url, "format": "event_id_only"},
    }
    await set_pusher(bob, body)
    event_id = await alice.say(room, "not sent to Google")
    await settle(services)
    [message] = fake.messages
    assert message["token"] == "fcm-token-bob"
    assert message["data"] == {"event_id": event_id, "room_id": room, "prio": "high", "unread": "1"}
    assert message["android"]["priority"] == "high"

    fake.unregistered.add("fcm-token-bob")
    await alice.say(room, "again")
    await settle(services)
    assert await list_pushers(bob) == []


async def test_ios_pusher_through_apns_over_http2(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, apns: tuple[Any, Path, Path]
) -> None:
    """Element iOS's pusher through our gateway to a local APNs (HTTP/2 over TLS) that checks the
    provider JWT; the badge follows the unread count, and a token APNs calls unregistered removes
    the pusher."""
    server, p8, cert = apns
    gateway = await aiohttp_server(create_gateway(apns_tests.gateway_config(server, p8, cert)))
    config = make_config(tmp_path, ip_range_whitelist=["127.0.0.0/8"])
    client = await aiohttp_client(create_app_from_config(config, clock=FakeClock()))
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    body = {
        "kind": "http",
        "app_id": "org.example.ios",
        "pushkey": apns_tests.PUSHKEY,
        "app_display_name": "Element",
        "device_display_name": "iPhone",
        "lang": "ko",
        "data": {
            "url": f"http://127.0.0.1:{gateway.port}{NOTIFY}",
            "default_payload": {"aps": {"sound": "default"}},
        },
    }
    await set_pusher(bob, body)
    event_id = await alice.say(room, "내일 소풍 준비물 안내")
    await settle(services)
    [(headers, payload)] = server.requests
    assert headers[":path"] == f"/3/device/{apns_tests.TOKEN_BYTES.hex()}"
    assert headers["apns-topic"] == "org.example.ios" and headers["apns-priority"] == "10"
    sent = json.loads(payload)
    assert sent["event_id"] == event_id and sent["room_id"] == room
    assert sent["aps"]["badge"] == 1 and sent["aps"]["sound"] == "default"
    assert "내일 소풍 준비물 안내" in sent["aps"]["alert"]["loc-args"]

    # Bob's token goes dead at Apple: the next push removes his pusher.
    await set_pusher(bob, {**body, "pushkey": apns_tests.DEAD})
    await alice.say(room, "again")
    await settle(services)
    assert [p["pushkey"] for p in await list_pushers(bob)] == [apns_tests.PUSHKEY]
