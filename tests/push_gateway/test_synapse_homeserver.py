"""Our push gateway serving Synapse as a homeserver, unchanged (issue #15's acceptance): Synapse
from PyPI (`bench/synapse_ref.py`, one per module) with `ip_range_whitelist` for loopback; Bob's
http pusher points at our gateway; Alice's message on Synapse ends as a Web Push that the local
push service decrypts with the subscription's private key (VAPID checked), and Bob reading on
another device sends the badge to 0.

Synapse comes from PyPI into `bench/.synapse-venv` (shared with tests/clients/test_synapse_federation.py,
which CI runs anyway); without it or network access the module skips, except under `CI=true`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridges.push_gateway.server import create_app as create_gateway
from synapse_compat_tests.client import MatrixClient, Response, q, register_user

from . import test_webpush as webpush
from .fakes import Subscription, b64url
from .test_webpush import PushService, check_vapid, decrypt, make_gateway_config

push_service = webpush.push_service
vapid_key = webpush.vapid_key

V3 = "/_matrix/client/v3"
NOTIFY = "/_matrix/push/v1/notify"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from bench import synapse_ref

    try:
        synapse_ref.install()
    except Exception as exc:  # no network to PyPI, build failure...
        if os.environ.get("CI") == "true":
            pytest.fail(f"Synapse could not be installed from PyPI: {exc}")
        pytest.skip(f"Synapse could not be installed from PyPI: {exc}")
    data_dir = tmp_path_factory.mktemp("synapse-push")
    inst = synapse_ref.start(
        port=_free_port(),
        data_dir=data_dir,
        bcrypt_rounds=4,
        # Synapse's outbound blocklist refuses loopback gateways unless whitelisted.
        extra_config={"ip_range_whitelist": ["127.0.0.0/8"]},
    )
    try:
        yield inst
    finally:
        synapse_ref.stop(data_dir)


async def call(client: MatrixClient, method: str, path: str, body: Any = None) -> Any:
    args = (method, path) if body is None else (method, path, body)
    resp: Response = await asyncio.to_thread(client.request, *args)
    assert resp.status == 200, resp.describe()
    return resp.body


async def until(check: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 60.0  # generous: a loaded CI machine
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_message_on_synapse_arrives_as_decrypted_web_push(
    synapse: Any, aiohttp_server: Any, push_service: PushService, vapid_key: tuple[Path, Any]
) -> None:
    gateway = await aiohttp_server(create_gateway(make_gateway_config(vapid_key[0])))
    anon = MatrixClient(synapse.base_url)
    alice_id, alice_token, _ = await asyncio.to_thread(
        register_user,
        anon,
        synapse.shared_secret,
        f"alice{secrets.token_hex(3)}",
        "pw-123456",
        False,
        "Alice",
    )
    bob_id, bob_token, _ = await asyncio.to_thread(
        register_user, anon, synapse.shared_secret, f"bob{secrets.token_hex(3)}", "pw-123456"
    )
    alice, bob = MatrixClient(synapse.base_url, alice_token), MatrixClient(synapse.base_url, bob_token)
    room = (
        await call(alice, "POST", f"{V3}/createRoom", {"preset": "trusted_private_chat", "invite": [bob_id]})
    )["room_id"]
    await call(bob, "POST", f"{V3}/join/{q(room)}", {})

    sub = Subscription(f"{push_service.base}/push/bob")
    pusher = {
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
    }
    await call(bob, "POST", f"{V3}/pushers/set", pusher)
    sent = await call(
        alice,
        "PUT",
        f"{V3}/rooms/{q(room)}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "가정통신문이 도착했습니다"},
    )

    await until(lambda: len(push_service.received) >= 1, "the Web Push of Alice's message")
    [(name, headers, body)] = push_service.received
    assert name == "bob" and headers["Content-Encoding"] == "aes128gcm"
    check_vapid(headers, push_service.base, vapid_key[1])
    payload = decrypt(sub, body)
    assert payload["event_id"] == sent["event_id"] and payload["room_id"] == room
    assert payload["content"]["body"] == "가정통신문이 도착했습니다"
    assert payload["sender"] == alice_id and payload["sender_display_name"] == "Alice"
    assert payload["unread"] == 1

    # Bob reads on another device: Synapse sends a badge-only notification, the badge goes to 0.
    login = await call(
        anon,
        "POST",
        f"{V3}/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": bob_id},
            "password": "pw-123456",
        },
    )
    other_device = MatrixClient(synapse.base_url, login["access_token"])
    await call(other_device, "POST", f"{V3}/rooms/{q(room)}/receipt/m.read/{q(sent['event_id'])}", {})
    await until(lambda: len(push_service.received) >= 2, "the badge update")
    assert decrypt(sub, push_service.received[1][2]) == {"unread": 0}
