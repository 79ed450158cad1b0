"""Web Push (RFC 8030) with VAPID (RFC 8292) and ``aes128gcm`` payload encryption (RFC 8291).

Sygnal's conventions: the pushkey is the subscription's ``p256dh`` key, ``data.endpoint`` and
``data.auth`` complete the subscription; ``data.events_only``, ``data.only_last_per_room`` and
``data.default_payload`` are honoured. Encryption and VAPID signing use pywebpush/py-vapid
(CPU only); the request itself is sent with aiohttp so nothing blocks the event loop.
"""

from __future__ import annotations

import json
import time
from base64 import urlsafe_b64encode
from hashlib import blake2s
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher, WebPushException

from ..config import ConfigError
from ..metrics import WEBPUSH_ACTIVE, WEBPUSH_SEND_TIME, WEBPUSH_STATUS
from ..notification import Device, Notification
from .base import Pushkin, TemporaryDispatchError, glob_to_regex, redact_pushkey

DEFAULT_TTL = 15 * 60
# The whole encrypted message must stay under 4096 bytes; these keep typical payloads well below.
MAX_BODY_LENGTH = 1000
MAX_CIPHERTEXT_LENGTH = 2000
VAPID_LIFETIME = 12 * 3600


class WebpushPushkin(Pushkin):
    kind = "webpush"
    understood_keys = Pushkin.understood_keys | {
        "max_connections",
        "vapid_private_key",
        "vapid_contact_email",
        "allowed_endpoints",
        "ttl",
        "ca_file",
    }

    def __init__(self, name: str, cfg: dict[str, Any], proxy: str | None = None) -> None:
        super().__init__(name, cfg, proxy)
        # Sygnal does not retry Web Push; the homeserver's own back-off covers it.
        self.max_tries = max(1, self.get("max_tries", int, 1))
        key_file = self.require("vapid_private_key", str)
        if not Path(key_file).exists():
            raise ConfigError(f"apps.{name}.vapid_private_key: file {key_file} does not exist")
        try:
            self.vapid = Vapid.from_file(private_key_file=key_file)
        except (VapidException, ValueError) as exc:
            raise ConfigError(f"apps.{name}.vapid_private_key: not a valid VAPID private key") from exc
        self.contact_email = self.require("vapid_contact_email", str)
        self.ttl = self.get("ttl", int, DEFAULT_TTL)
        allowed = self.get("allowed_endpoints", list)
        if allowed is not None and not all(isinstance(a, str) for a in allowed):
            raise ConfigError(f"apps.{name}.allowed_endpoints: expected a list of host globs")
        self.allowed_endpoints = [glob_to_regex(a) for a in allowed] if allowed else None

    async def send(self, n: Notification, device: Device, request_id: str) -> list[str]:
        data = device.data
        key = redact_pushkey(device.pushkey)
        if not isinstance(data, dict):
            self.log.warning("[%s] rejecting %s: pusher data is not an object", request_id, key)
            return [device.pushkey]
        # A push without an event would force the browser to show a generic notification.
        if data.get("events_only") is True and not n.event_id:
            return []
        endpoint, auth = data.get("endpoint"), data.get("auth")
        if not isinstance(endpoint, str) or not isinstance(auth, str):
            self.log.warning("[%s] rejecting %s: subscription endpoint/auth missing", request_id, key)
            return [device.pushkey]
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.log.warning("[%s] rejecting %s: endpoint is not an http(s) URL", request_id, key)
            return [device.pushkey]
        if self.allowed_endpoints and not any(r.match(parts.netloc) for r in self.allowed_endpoints):
            # The operator's policy, not the subscription's fault: drop without rejecting.
            self.log.error("[%s] push service %s is not in allowed_endpoints", request_id, parts.netloc)
            return []

        payload = json.dumps(build_payload(n, device), ensure_ascii=False).encode()
        try:
            pusher = WebPusher({"endpoint": endpoint, "keys": {"p256dh": device.pushkey, "auth": auth}})
            body = pusher.encode(payload, content_encoding="aes128gcm")["body"]
        except (WebPushException, ValueError, TypeError) as exc:
            self.log.warning("[%s] rejecting %s: invalid subscription keys (%s)", request_id, key, exc)
            return [device.pushkey]
        audience = f"{parts.scheme}://{parts.netloc}"
        claims = {
            "sub": f"mailto:{self.contact_email}",
            "aud": audience,
            "exp": int(time.time()) + VAPID_LIFETIME,
        }
        headers = {
            "Authorization": self.vapid.sign(claims)["Authorization"],
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self.ttl),
            # Web Push has only normal and low urgency worth using here.
            "Urgency": "low" if n.prio == "low" else "normal",
            "User-Agent": "matrix-push-gateway",
        }
        if n.room_id and data.get("only_last_per_room") is True:
            # 22 bytes -> 32 base64url characters, the Topic header's limit.
            headers["Topic"] = urlsafe_b64encode(
                blake2s(n.room_id.encode(), digest_size=22).digest()
            ).decode()

        assert self.session is not None
        try:
            with WEBPUSH_SEND_TIME.time(), WEBPUSH_ACTIVE.track_inprogress():
                async with self.session.post(
                    endpoint, data=body, headers=headers, **self._post_kwargs()
                ) as resp:
                    status = resp.status
                    await resp.read()
        except TimeoutError as exc:
            raise TemporaryDispatchError(f"push service {parts.netloc} timed out") from exc
        except aiohttp.ClientError as exc:
            raise TemporaryDispatchError(
                f"push service {parts.netloc} unreachable: {type(exc).__name__}"
            ) from exc
        WEBPUSH_STATUS.labels(pushkin=self.name, code=status).inc()
        if status in (404, 410):
            self.log.info(
                "[%s] rejecting %s: %s answered %d (subscription gone)", request_id, key, parts.netloc, status
            )
            return [device.pushkey]
        if status >= 500 or status == 429:
            raise TemporaryDispatchError(f"push service {parts.netloc} answered {status}")
        if status >= 400:
            self.log.warning("[%s] push to %s failed: %s answered %d", request_id, key, parts.netloc, status)
        return []


def build_payload(n: Notification, device: Device) -> dict[str, Any]:
    """Sygnal's Web Push payload: the notification's fields with the counts flattened in."""
    payload: dict[str, Any] = {}
    if device.data and isinstance(device.data.get("default_payload"), dict):
        payload.update(device.data["default_payload"])
    for attr in (
        "room_id",
        "room_name",
        "room_alias",
        "membership",
        "event_id",
        "sender",
        "sender_display_name",
        "user_is_target",
        "type",
    ):
        value = getattr(n, attr)
        if value:
            payload[attr] = value
    if n.counts.unread is not None:
        payload["unread"] = n.counts.unread
    if n.counts.missed_calls is not None:
        payload["missed_calls"] = n.counts.missed_calls
    if n.content:
        content = dict(n.content)
        content.pop("formatted_body", None)  # a notification cannot show HTML anyway
        body = content.get("body")
        if isinstance(body, str) and len(body) > MAX_BODY_LENGTH:
            content["body"] = body[: MAX_BODY_LENGTH - 1] + "…"
        ciphertext = content.get("ciphertext")
        if isinstance(ciphertext, str) and len(ciphertext) > MAX_CIPHERTEXT_LENGTH:
            content.pop("ciphertext")
        payload["content"] = content
    return payload
