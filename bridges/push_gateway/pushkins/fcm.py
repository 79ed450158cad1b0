"""Firebase Cloud Messaging, HTTP v1 API (Sygnal's ``gcm`` pushkin with ``api_version: v1``).

The OAuth2 access token comes from the service account: a JWT assertion signed with its RSA key
(RS256) is exchanged at the account's ``token_uri`` (RFC 7523), then cached until shortly
before it expires. The message carries ``data`` (string values, as v1 requires) and ``android``
options, merged over the operator's ``fcm_options``. The legacy API is gone (Google shut it
down in 2024), so only ``api_version: v1`` is accepted.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from ..config import ConfigError
from ..metrics import GCM_ACTIVE, GCM_SEND_TIME, GCM_STATUS
from ..notification import Device, Notification
from .base import DispatchError, Pushkin, TemporaryDispatchError, redact_pushkey, retry_after_seconds

DEFAULT_ENDPOINT = "https://fcm.googleapis.com"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
AUTH_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
MAX_BYTES_PER_FIELD = 1024


class FcmPushkin(Pushkin):
    kind = "fcm"
    understood_keys = Pushkin.understood_keys | {
        "api_key",
        "api_version",
        "fcm_options",
        "max_connections",
        "project_id",
        "service_account_file",
        "endpoint",
        "ca_file",
    }

    def __init__(self, name: str, cfg: dict[str, Any], proxy: str | None = None) -> None:
        super().__init__(name, cfg, proxy)
        version = self.get("api_version", str)
        if version != "v1":
            raise ConfigError(
                f"apps.{name}.api_version: must be 'v1' (the legacy FCM API has been shut down; "
                "configure project_id and service_account_file)"
            )
        self.project_id = self.require("project_id", str)
        account_file = self.require("service_account_file", str)
        try:
            account = json.loads(Path(account_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"apps.{name}.service_account_file: cannot read {account_file}: {exc}") from exc
        if not isinstance(account, dict) or not all(
            isinstance(account.get(k), str) for k in ("client_email", "private_key")
        ):
            raise ConfigError(
                f"apps.{name}.service_account_file: not a service-account JSON (client_email, private_key)"
            )
        self.client_email: str = account["client_email"]
        self.private_key: str = account["private_key"]
        self.private_key_id: str | None = account.get("private_key_id")
        self.token_uri: str = account.get("token_uri") or DEFAULT_TOKEN_URI
        try:
            # Fail at start-up, not at the first push, if the key is unusable.
            jwt.encode({"probe": 1}, self.private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise ConfigError(f"apps.{name}.service_account_file: private_key is not an RSA key") from exc
        options = self.get("fcm_options", dict, {})
        self.fcm_options: dict[str, Any] = options
        endpoint = self.get("endpoint", str, DEFAULT_ENDPOINT).rstrip("/")
        self.url = f"{endpoint}/v1/projects/{self.project_id}/messages:send"
        self._token: str | None = None
        self._token_expiry = 0.0
        self._token_lock = asyncio.Lock()

    async def _access_token(self) -> str:
        async with self._token_lock:
            if self._token and time.time() < self._token_expiry - 60:
                return self._token
            now = int(time.time())
            claims = {
                "iss": self.client_email,
                "scope": AUTH_SCOPE,
                "aud": self.token_uri,
                "iat": now,
                "exp": now + 3600,
            }
            headers = {"kid": self.private_key_id} if self.private_key_id else None
            assertion = jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)
            form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
            assert self.session is not None
            try:
                async with self.session.post(self.token_uri, data=form, **self._post_kwargs()) as resp:
                    status = resp.status
                    body = await resp.json(content_type=None) if status == 200 else None
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                raise TemporaryDispatchError(f"OAuth2 token request failed: {type(exc).__name__}") from exc
            if status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
                if status >= 500:
                    raise TemporaryDispatchError(f"OAuth2 token endpoint answered {status}")
                raise DispatchError(f"OAuth2 token endpoint refused the service account ({status})")
            self._token = body["access_token"]
            expires_in = body.get("expires_in")
            self._token_expiry = time.time() + (expires_in if isinstance(expires_in, int) else 3600)
            return self._token

    async def send(self, n: Notification, device: Device, request_id: str) -> list[str]:
        key = redact_pushkey(device.pushkey)
        data = build_data(n, device)
        if data is None:
            self.log.warning("[%s] rejecting %s: default_payload is not an object", request_id, key)
            return [device.pushkey]
        message: dict[str, Any] = copy.deepcopy(self.fcm_options)
        message["data"] = data
        android: dict[str, Any] = message["android"] if isinstance(message.get("android"), dict) else {}
        android["priority"] = "normal" if n.prio == "low" else "high"
        message["android"] = android
        message["token"] = device.pushkey
        token = await self._access_token()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        assert self.session is not None
        try:
            with GCM_SEND_TIME.time(), GCM_ACTIVE.track_inprogress():
                async with self.session.post(
                    self.url, data=json.dumps({"message": message}), headers=headers, **self._post_kwargs()
                ) as resp:
                    status = resp.status
                    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
                    text = await resp.text()
        except TimeoutError as exc:
            raise TemporaryDispatchError("FCM timed out") from exc
        except aiohttp.ClientError as exc:
            raise TemporaryDispatchError(f"FCM unreachable: {type(exc).__name__}") from exc
        GCM_STATUS.labels(pushkin=self.name, code=status).inc()
        if 200 <= status < 300:
            return []
        error_code = _fcm_error_code(text)
        if status == 404 or error_code == "UNREGISTERED":
            self.log.info(
                "[%s] rejecting %s: FCM says %s (%d)", request_id, key, error_code or "not found", status
            )
            return [device.pushkey]
        if status == 429 or status >= 500:
            raise TemporaryDispatchError(f"FCM answered {status}", retry_after)
        if status == 401:
            self._token = None  # fetch a new one next time
        raise DispatchError(f"FCM answered {status} {error_code or ''}".strip())


def _fcm_error_code(text: str) -> str | None:
    """The v1 error's ``FcmError.errorCode`` detail (e.g. UNREGISTERED), else its status."""
    try:
        error = json.loads(text).get("error", {})
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict):
        return None
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and isinstance(detail.get("errorCode"), str):
            return str(detail["errorCode"])
    status = error.get("status")
    return status if isinstance(status, str) else None


def truncate_str(value: str, max_bytes: int = MAX_BYTES_PER_FIELD) -> str:
    raw = value.encode()
    if len(raw) <= max_bytes:
        return value
    return raw[: max_bytes - 3].decode("utf-8", errors="ignore") + "…"


def build_data(n: Notification, device: Device) -> dict[str, str] | None:
    """Sygnal's v1 ``data``: notification fields, ``content_*`` flattened, counts; all strings."""
    data: dict[str, str] = {}
    if device.data and "default_payload" in device.data:
        default = device.data["default_payload"]
        if not isinstance(default, dict):
            return None
        data.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in default.items()})
    for attr in (
        "event_id",
        "type",
        "sender",
        "room_name",
        "room_alias",
        "membership",
        "sender_display_name",
        "room_id",
    ):
        value = getattr(n, attr)
        if value is not None:
            data[attr] = truncate_str(value)
    if n.content:
        for attr, value in n.content.items():
            if isinstance(value, str):
                data["content_" + attr] = truncate_str(value)
    data["prio"] = "normal" if n.prio == "low" else "high"
    if n.counts.unread is not None:
        data["unread"] = str(n.counts.unread)
    if n.counts.missed_calls is not None:
        data["missed_calls"] = str(n.counts.missed_calls)
    return data
