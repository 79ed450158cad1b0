"""FCM HTTP v1 delivery: a local fake OAuth2 token endpoint and a local fake FCM endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web

from bridges.push_gateway.config import parse_config
from bridges.push_gateway.server import create_app

from .fakes import service_account, start_http

NOTIFY = "/_matrix/push/v1/notify"
ACCESS_TOKEN = "ya29.fake-access-token"


class FakeGoogle:
    """The token endpoint verifies the service account's JWT assertion; FCM checks the bearer."""

    def __init__(self) -> None:
        self.base = ""
        self.public_key: Any = None
        self.token_requests = 0
        self.messages: list[dict[str, Any]] = []
        self.unregistered: set[str] = set()
        self.failures = 0  # answer this many sends with 503 first

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        header = jwt.get_unverified_header(str(form["assertion"]))
        assert header["alg"] == "RS256" and header["kid"] == "test-key-id"
        try:
            claims = jwt.decode(
                str(form["assertion"]), self.public_key, algorithms=["RS256"], audience=f"{self.base}/token"
            )
        except jwt.PyJWTError as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        assert claims["iss"] == "push@test-project.iam.gserviceaccount.com"
        assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
        assert claims["exp"] > claims["iat"]
        self.token_requests += 1
        return web.json_response({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"})

    async def send(self, request: web.Request) -> web.Response:
        assert request.match_info["project"] == "test-project"
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return web.json_response({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status=401)
        body = await request.json()
        message = body["message"]
        self.messages.append(message)
        if self.failures:
            self.failures -= 1
            return web.json_response({"error": {"code": 503, "status": "UNAVAILABLE"}}, status=503)
        if message["token"] in self.unregistered:
            error = {
                "code": 404,
                "message": "Requested entity was not found.",
                "status": "NOT_FOUND",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                        "errorCode": "UNREGISTERED",
                    }
                ],
            }
            return web.json_response({"error": error}, status=404)
        return web.json_response({"name": "projects/test-project/messages/0:1"})


@pytest.fixture
async def google(tmp_path: Path) -> AsyncIterator[tuple[FakeGoogle, Path]]:
    fake = FakeGoogle()
    app = web.Application()
    app.router.add_post("/token", fake.token)
    app.router.add_post("/v1/projects/{project}/messages:send", fake.send)
    runner, fake.base = await start_http(app)
    account_file, key = service_account(tmp_path, f"{fake.base}/token")
    fake.public_key = key.public_key()
    yield fake, account_file
    await runner.cleanup()


def gateway_config(fake: FakeGoogle, account_file: Path, **extra: Any) -> Any:
    app = {
        "type": "gcm",
        "api_version": "v1",
        "project_id": "test-project",
        "service_account_file": str(account_file),
        "endpoint": fake.base,
        **extra,
    }
    return parse_config({"apps": {"im.example.android": app}})


async def test_delivers_v1_message_with_oauth2_token(
    aiohttp_client: Any, google: tuple[FakeGoogle, Path]
) -> None:
    fake, account_file = google
    options = {"android": {"collapse_key": "matrix"}, "apns": {"payload": {"aps": {"mutable-content": 1}}}}
    client = await aiohttp_client(create_app(gateway_config(fake, account_file, fcm_options=options)))
    notification = {
        "event_id": "$ev",
        "room_id": "!room:example.org",
        "type": "m.room.message",
        "sender": "@bob:example.org",
        "room_name": "Lunch",
        "content": {"msgtype": "m.text", "body": "hello", "m.relates_to": {"rel_type": "x"}},
        "counts": {"unread": 2},
        "devices": [
            {
                "app_id": "im.example.android",
                "pushkey": "fcm-token-1",
                "data": {"default_payload": {"a": "b"}},
            }
        ],
    }
    resp = await client.post(NOTIFY, json={"notification": notification})
    assert resp.status == 200
    assert await resp.json() == {"rejected": []}
    [message] = fake.messages
    assert message["token"] == "fcm-token-1"
    assert message["android"] == {"collapse_key": "matrix", "priority": "high"}
    assert message["apns"] == options["apns"]
    # v1 data is a map of strings: content flattened to content_*, counts as strings.
    assert message["data"] == {
        "a": "b",
        "event_id": "$ev",
        "room_id": "!room:example.org",
        "type": "m.room.message",
        "sender": "@bob:example.org",
        "room_name": "Lunch",
        "content_msgtype": "m.text",
        "content_body": "hello",
        "prio": "high",
        "unread": "2",
    }
    assert all(isinstance(v, str) for v in message["data"].values())

    # event_id_only and low priority; the access token is reused.
    body = {
        "notification": {
            "event_id": "$ev2",
            "room_id": "!room:example.org",
            "prio": "low",
            "counts": {"unread": 1, "missed_calls": 0},
            "devices": [{"app_id": "im.example.android", "pushkey": "fcm-token-1"}],
        }
    }
    resp = await client.post(NOTIFY, json=body)
    assert await resp.json() == {"rejected": []}
    assert fake.messages[1]["data"] == {
        "event_id": "$ev2",
        "room_id": "!room:example.org",
        "prio": "normal",
        "unread": "1",
        "missed_calls": "0",
    }
    assert fake.messages[1]["android"]["priority"] == "normal"
    assert fake.token_requests == 1


async def test_unregistered_token_is_rejected(aiohttp_client: Any, google: tuple[FakeGoogle, Path]) -> None:
    fake, account_file = google
    fake.unregistered.add("dead-token")
    client = await aiohttp_client(create_app(gateway_config(fake, account_file)))
    devices = [
        {"app_id": "im.example.android", "pushkey": "dead-token"},
        {"app_id": "im.example.android", "pushkey": "live-token"},
    ]
    resp = await client.post(NOTIFY, json={"notification": {"event_id": "$e", "devices": devices}})
    assert resp.status == 200
    assert await resp.json() == {"rejected": ["dead-token"]}
    assert sorted(m["token"] for m in fake.messages) == ["dead-token", "live-token"]


async def test_refused_service_account_is_a_dispatch_failure(
    aiohttp_client: Any, google: tuple[FakeGoogle, Path], tmp_path: Path
) -> None:
    fake, _ = google
    # A service account whose key the token endpoint does not know: the assertion fails.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_file, _ = service_account(other_dir, f"{fake.base}/token")
    client = await aiohttp_client(create_app(gateway_config(fake, other_file)))
    body = {"notification": {"event_id": "$e", "devices": [{"app_id": "im.example.android", "pushkey": "t"}]}}
    resp = await client.post(NOTIFY, json=body)
    assert resp.status == 502
    assert fake.messages == []


def test_service_account_file_shape_is_checked(tmp_path: Path) -> None:
    from bridges.push_gateway.config import ConfigError
    from bridges.push_gateway.server import build_pushkins

    bad = tmp_path / "sa.json"
    bad.write_text(json.dumps({"type": "service_account"}))
    config = parse_config(
        {
            "apps": {
                "a": {"type": "fcm", "api_version": "v1", "project_id": "p", "service_account_file": str(bad)}
            }
        }
    )
    with pytest.raises(ConfigError, match=r"apps\.a\.service_account_file"):
        build_pushkins(config)


async def test_temporary_failure_is_retried(aiohttp_client: Any, google: tuple[FakeGoogle, Path]) -> None:
    fake, account_file = google
    fake.failures = 1
    client = await aiohttp_client(create_app(gateway_config(fake, account_file, retry_delay=0)))
    body = {"notification": {"event_id": "$e", "devices": [{"app_id": "im.example.android", "pushkey": "t"}]}}
    resp = await client.post(NOTIFY, json=body)
    assert resp.status == 200
    assert await resp.json() == {"rejected": []}
    assert len(fake.messages) == 2

    # Failing every try: 502, the pushkey is kept.
    fake.failures = 10
    client = await aiohttp_client(create_app(gateway_config(fake, account_file, retry_delay=0, max_tries=2)))
    resp = await client.post(NOTIFY, json=body)
    assert resp.status == 502
    assert len(fake.messages) == 4
