"""Apple Push Notification service over HTTP/2, token (``.p8``, ES256 JWT) or certificate auth.

Payloads follow Sygnal's: a localised ``alert`` (``loc-key``/``loc-args``) and ``badge`` for full
notifications; for ``event_id_only`` pushers the ids and counts only, with ``mutable-content``
so the app's notification service extension fetches and decrypts the event itself. The room id
goes into ``thread-id`` so iOS groups notifications per room.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt

from ..config import ConfigError
from ..metrics import APNS_ACTIVE, APNS_SEND_TIME, APNS_STATUS
from ..notification import Device, Notification
from .base import DispatchError, Pushkin, TemporaryDispatchError, redact_pushkey, retry_after_seconds

ENDPOINTS = {"production": "https://api.push.apple.com", "sandbox": "https://api.sandbox.push.apple.com"}
PUSH_TYPES = ("alert", "background", "voip", "complication", "fileprovider", "mdm")
# (status, reason) pairs that mean the device token is no good: reject the pushkey.
TOKEN_ERRORS = {
    (400, "BadDeviceToken"),
    (400, "DeviceTokenNotForTopic"),
    (400, "TopicDisallowed"),
    (410, "Unregistered"),
}
MAX_FIELD_LENGTH = 1024
MAX_JSON_BODY_SIZE = 4096
# Apple refuses provider tokens older than an hour and throttles ones renewed too often.
JWT_LIFETIME = 40 * 60


class ApnsPushkin(Pushkin):
    kind = "apns"
    understood_keys = Pushkin.understood_keys | {
        "platform",
        "certfile",
        "keyfile",
        "key_id",
        "team_id",
        "topic",
        "push_type",
        "convert_device_token_to_hex",
        "endpoint",
        "ca_file",
    }

    def __init__(self, name: str, cfg: dict[str, Any], proxy: str | None = None) -> None:
        super().__init__(name, cfg, proxy)
        platform = self.get("platform", str, "production")
        if platform == "prod":
            platform = "production"
        if platform not in ENDPOINTS:
            raise ConfigError(f"apps.{name}.platform: must be 'production' or 'sandbox', not {platform!r}")
        self.endpoint = self.get("endpoint", str, ENDPOINTS[platform]).rstrip("/")
        self.certfile = self.get("certfile", str)
        keyfile = self.get("keyfile", str)
        self.topic: str | None = self.get("topic", str)
        self.signing_key: str | None = None
        if self.certfile:
            if not Path(self.certfile).exists():
                raise ConfigError(f"apps.{name}.certfile: file {self.certfile} does not exist")
        elif keyfile:
            if not Path(keyfile).exists():
                raise ConfigError(f"apps.{name}.keyfile: file {keyfile} does not exist")
            self.key_id: str = self.require("key_id", str)
            self.team_id: str = self.require("team_id", str)
            self.topic = self.require("topic", str)
            self.signing_key = Path(keyfile).read_text(encoding="utf-8")
            try:
                jwt.encode({"iss": self.team_id}, self.signing_key, algorithm="ES256")
            except (ValueError, TypeError, jwt.PyJWTError) as exc:
                raise ConfigError(f"apps.{name}.keyfile: not an ES256 (P-256) private key") from exc
        else:
            raise ConfigError(f"apps.{name}.keyfile: required (or certfile) for type apns")
        self.push_type = self.get("push_type", str)
        if self.push_type is not None and self.push_type not in PUSH_TYPES:
            raise ConfigError(f"apps.{name}.push_type: must be one of {', '.join(PUSH_TYPES)}")
        self.convert_to_hex = self.get("convert_device_token_to_hex", bool, True)
        self._jwt: str | None = None
        self._jwt_issued = 0.0
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        ctx = self.ssl_context()
        if self.certfile:
            ctx.load_cert_chain(self.certfile)
        self.client = httpx.AsyncClient(
            http2=True,
            verify=ctx,
            timeout=httpx.Timeout(self.request_timeout),
            limits=httpx.Limits(max_connections=self.get("max_connections", int, 20)),
            proxy=self.proxy,
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def _provider_token(self) -> str:
        now = time.time()
        if self._jwt is None or now - self._jwt_issued > JWT_LIFETIME:
            assert self.signing_key is not None
            self._jwt = jwt.encode(
                {"iss": self.team_id, "iat": int(now)},
                self.signing_key,
                algorithm="ES256",
                headers={"kid": self.key_id},
            )
            self._jwt_issued = now
        return self._jwt

    def _device_token(self, pushkey: str) -> str | None:
        if not self.convert_to_hex:
            return pushkey
        try:
            return base64.b64decode(pushkey, validate=True).hex()
        except (binascii.Error, ValueError):
            return None

    async def send(self, n: Notification, device: Device, request_id: str) -> list[str]:
        key = redact_pushkey(device.pushkey)
        default_payload: dict[str, Any] = {}
        if device.data and "default_payload" in device.data:
            if not isinstance(device.data["default_payload"], dict):
                self.log.warning("[%s] rejecting %s: default_payload is not an object", request_id, key)
                return [device.pushkey]
            default_payload = device.data["default_payload"]
        token = self._device_token(device.pushkey)
        if not token:
            self.log.warning("[%s] rejecting %s: pushkey is not base64", request_id, key)
            return [device.pushkey]
        if n.event_id and not n.type:
            payload: dict[str, Any] | None = event_id_only_payload(n, default_payload)
        else:
            payload = full_payload(n, default_payload)
        if payload is None:
            return []  # nothing to show and no badge to set
        body = truncate_payload(payload)
        push_type = self.push_type or "alert"
        headers = {
            "apns-push-type": push_type,
            # Background pushes must be sent with priority 5.
            "apns-priority": "5" if n.prio == "low" or push_type == "background" else "10",
            "apns-id": str(uuid.uuid4()),
        }
        if self.topic:
            headers["apns-topic"] = self.topic
        if self.signing_key is not None:
            headers["authorization"] = f"bearer {self._provider_token()}"
        assert self.client is not None
        try:
            with APNS_SEND_TIME.time(), APNS_ACTIVE.track_inprogress():
                resp = await self.client.post(
                    f"{self.endpoint}/3/device/{token}", content=body, headers=headers
                )
        except httpx.TimeoutException as exc:
            raise TemporaryDispatchError("APNs timed out") from exc
        except httpx.HTTPError as exc:
            raise TemporaryDispatchError(f"APNs unreachable: {type(exc).__name__}") from exc
        APNS_STATUS.labels(pushkin=self.name, code=resp.status_code).inc()
        if resp.status_code == 200:
            return []
        try:
            reason = str(resp.json().get("reason", ""))
        except (ValueError, AttributeError):
            reason = ""
        if (resp.status_code, reason) in TOKEN_ERRORS:
            self.log.info("[%s] rejecting %s: APNs %d %s", request_id, key, resp.status_code, reason)
            return [device.pushkey]
        if resp.status_code == 403 and reason == "ExpiredProviderToken":
            self._jwt = None
            raise TemporaryDispatchError("APNs provider token expired", retry_after=0)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TemporaryDispatchError(
                f"APNs {resp.status_code} {reason}", retry_after_seconds(resp.headers.get("retry-after"))
            )
        raise DispatchError(f"APNs {resp.status_code} {reason}".strip())


def event_id_only_payload(n: Notification, default_payload: dict[str, Any]) -> dict[str, Any]:
    payload = copy.deepcopy(default_payload)
    if n.room_id:
        payload["room_id"] = n.room_id
    if n.event_id:
        payload["event_id"] = n.event_id
    if n.counts.unread is not None:
        payload["unread_count"] = n.counts.unread
    if n.counts.missed_calls is not None:
        payload["missed_calls"] = n.counts.missed_calls
    aps = payload.setdefault("aps", {})
    if isinstance(aps, dict):
        # The app's extension fetches the event and writes the text itself.
        aps["mutable-content"] = 1
        if n.room_id:
            aps["thread-id"] = n.room_id
        if n.counts.unread is not None:
            aps["badge"] = n.counts.unread + (n.counts.missed_calls or 0)
    return payload


def _clip(value: str | None) -> str | None:
    return value[:MAX_FIELD_LENGTH] if value is not None else None


def full_payload(n: Notification, default_payload: dict[str, Any]) -> dict[str, Any] | None:
    """Sygnal's localised alert: ``loc-key`` names a string in the app, ``loc-args`` fill it."""
    sender = _clip(n.sender_display_name or n.sender) or " "
    room = _clip(n.room_name or n.room_alias)
    content = n.content or {}
    loc_key: str | None = None
    loc_args: list[Any] | None = None
    if n.type in ("m.room.message", "m.room.encrypted"):
        body = content.get("body") if isinstance(content.get("body"), str) and "msgtype" in content else None
        msgtype = content.get("msgtype")
        is_image = msgtype == "m.image"
        action = body if msgtype == "m.emote" else None
        text = body if msgtype != "m.emote" else None
        if room:
            if is_image:
                loc_key, loc_args = "IMAGE_FROM_USER_IN_ROOM", [sender, text, room]
            elif text:
                loc_key, loc_args = "MSG_FROM_USER_IN_ROOM_WITH_CONTENT", [sender, room, text]
            elif action:
                loc_key, loc_args = "ACTION_FROM_USER_IN_ROOM", [room, sender, action]
            else:
                loc_key, loc_args = "MSG_FROM_USER_IN_ROOM", [sender, room]
        elif is_image:
            loc_key, loc_args = "IMAGE_FROM_USER", [sender, text]
        elif text:
            loc_key, loc_args = "MSG_FROM_USER_WITH_CONTENT", [sender, text]
        elif action:
            loc_key, loc_args = "ACTION_FROM_USER", [sender, action]
        else:
            loc_key, loc_args = "MSG_FROM_USER", [sender]
    elif n.type == "m.call.invite":
        offer = content.get("offer")
        sdp = offer.get("sdp") if isinstance(offer, dict) else None
        video = isinstance(sdp, str) and "m=video" in sdp
        loc_key, loc_args = ("VIDEO_CALL_FROM_USER" if video else "VOICE_CALL_FROM_USER"), [sender]
    elif n.type == "m.room.member":
        if n.user_is_target and n.membership == "invite":
            if room:
                loc_key, loc_args = "USER_INVITE_TO_NAMED_ROOM", [sender, room]
            else:
                loc_key, loc_args = "USER_INVITE_TO_CHAT", [sender]
    elif n.type:
        loc_key, loc_args = "MSG_FROM_USER", [sender]

    badge: int | None = n.counts.unread
    if n.counts.missed_calls is not None:
        badge = (badge or 0) + n.counts.missed_calls
    if loc_key is None and badge is None:
        return None
    payload: dict[str, Any] = copy.deepcopy(default_payload) if n.type else {}
    aps = payload.setdefault("aps", {})
    if loc_key:
        aps.setdefault("alert", {})["loc-key"] = loc_key
        aps["alert"]["loc-args"] = loc_args
        if n.room_id:
            aps["thread-id"] = n.room_id
            payload["room_id"] = n.room_id
        if n.event_id:
            payload["event_id"] = n.event_id
    if badge is not None:
        aps["badge"] = badge
    return payload


def truncate_payload(payload: dict[str, Any], max_length: int = MAX_JSON_BODY_SIZE) -> bytes:
    """Shorten the longest ``loc-args`` until the JSON fits APNs' 4 KiB limit."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    alert = payload.get("aps", {}).get("alert") if isinstance(payload.get("aps"), dict) else None
    args = alert.get("loc-args") if isinstance(alert, dict) else None
    while len(body) > max_length and isinstance(args, list):
        strings = [i for i, a in enumerate(args) if isinstance(a, str) and a]
        if not strings:
            break
        longest = max(strings, key=lambda i: len(args[i].encode()))
        raw = args[longest].encode()
        # Cut the excess plus room for the ellipsis (3 bytes), on a character boundary.
        keep = len(raw) - (len(body) - max_length) - 3
        args[longest] = raw[:keep].decode("utf-8", errors="ignore") + "…" if keep > 0 else ""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    if len(body) > max_length:
        raise DispatchError("APNs payload too large even after truncation")
    return body
