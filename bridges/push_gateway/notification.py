"""The body of ``POST /_matrix/push/v1/notify``, validated the way Sygnal validates it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class InvalidNotification(Exception):
    """The notify body is malformed; the message is returned to the homeserver with a 400."""


def _get(raw: dict[str, Any], key: str, type_: type, default: Any = None) -> Any:
    if raw.get(key) is None:
        return default
    value = raw[key]
    if not isinstance(value, type_) or (type_ is int and isinstance(value, bool)):
        raise InvalidNotification(f"{key} is of invalid type")
    return value


@dataclass
class Device:
    app_id: str
    pushkey: str
    pushkey_ts: int = 0
    data: dict[str, Any] | None = None
    tweaks: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any) -> Device:
        if not isinstance(raw, dict):
            raise InvalidNotification("Invalid device: expected an object")
        if not isinstance(raw.get("app_id"), str) or not raw["app_id"]:
            raise InvalidNotification("Device with missing or non-string app_id")
        if not isinstance(raw.get("pushkey"), str) or not raw["pushkey"]:
            raise InvalidNotification("Device with missing or non-string pushkey")
        return cls(
            app_id=raw["app_id"],
            pushkey=raw["pushkey"],
            pushkey_ts=_get(raw, "pushkey_ts", int, 0),
            data=_get(raw, "data", dict),
            tweaks=_get(raw, "tweaks", dict, {}),
        )


@dataclass
class Counts:
    unread: int | None = None
    missed_calls: int | None = None


@dataclass
class Notification:
    devices: list[Device]
    counts: Counts
    event_id: str | None = None
    room_id: str | None = None
    type: str | None = None
    sender: str | None = None
    sender_display_name: str | None = None
    room_name: str | None = None
    room_alias: str | None = None
    membership: str | None = None
    user_is_target: bool | None = None
    prio: str | None = None
    content: dict[str, Any] | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Notification:
        if not isinstance(raw.get("devices"), list):
            raise InvalidNotification("Expected list in 'devices' key")
        counts_raw = _get(raw, "counts", dict, {})
        counts = Counts(_get(counts_raw, "unread", int), _get(counts_raw, "missed_calls", int))
        strings = {
            key: _get(raw, key, str)
            for key in (
                "event_id",
                "room_id",
                "type",
                "sender",
                "sender_display_name",
                "room_name",
                "room_alias",
                "membership",
                "prio",
            )
        }
        return cls(
            devices=[Device.parse(d) for d in raw["devices"]],
            counts=counts,
            user_is_target=_get(raw, "user_is_target", bool),
            content=_get(raw, "content", dict),
            **strings,
        )
