"""The WebSocket sync protocol's names: frame types, close codes, the subprotocols (docs/websocket.md).

Every frame is a JSON object in a text frame with a `type`. Building the path of a convenience
request (`send`, `typing`, `receipt`, `read_markers`) is here too: they are shorthands for the
client-server endpoints they name and are served by exactly those endpoints.
"""

from __future__ import annotations

import enum
from typing import Any
from urllib.parse import quote

from homeserver.core.errors import MatrixError

# The unstable prefix of the upgrade path, and the subprotocol a browser offers (with its token).
UNSTABLE_PREFIX = "/_matrix/client/unstable/org.homeserver.ws"
SUBPROTOCOL = "org.homeserver.ws.v1"
TOKEN_SUBPROTOCOL_PREFIX = "org.homeserver.ws.token."

CLIENT_PREFIX = "/_matrix/client/"
# Binary responses (media) cannot travel in a JSON frame.
REFUSED_PREFIXES = ("/_matrix/client/v1/media/", "/_matrix/client/unstable/org.homeserver.ws/")
METHODS = frozenset({"GET", "PUT", "POST", "DELETE"})


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # the server is shutting down: reconnect (with backoff) from the last token
    TOO_BIG = 1009  # a client frame above the request body limit
    INTERNAL_ERROR = 1011
    BAD_REQUEST = 4400  # bad query parameters (since, filter, set_presence, timeout) or auth frame
    UNAUTHORIZED = 4401  # no token, or an unknown one, when connecting
    TIMEOUT = 4408  # no auth frame in time, or the client stopped reading (a frame did not drain)
    TOKEN_REVOKED = 4410  # the token stopped working while connected (logout, device deleted...)


def request_of(frame: dict[str, Any]) -> tuple[str, str, Any]:
    """(method, path with query, body) of a request frame; MatrixError (400) when malformed."""
    kind = frame.get("type")
    if kind == "request":
        method = frame.get("method")
        path = frame.get("path")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise MatrixError(400, "M_INVALID_PARAM", "'method' must be GET, PUT, POST or DELETE")
        if not isinstance(path, str) or not path.startswith(CLIENT_PREFIX):
            raise MatrixError(400, "M_INVALID_PARAM", f"'path' must start with {CLIENT_PREFIX}")
        if path.startswith(REFUSED_PREFIXES) or "#" in path:
            raise MatrixError(400, "M_UNRECOGNIZED", "This endpoint is not available over the WebSocket")
        body = frame.get("body")
        if body is not None and not isinstance(body, dict):
            raise MatrixError(400, "M_BAD_JSON", "'body' must be an object")
        return method.upper(), path, body
    room = _segment(frame, "room_id")
    if kind == "send":
        event_type = _segment(frame, "event_type", "m.room.message")
        txn_id = _segment(frame, "txn_id")
        content = frame.get("content")
        if not isinstance(content, dict):
            raise MatrixError(400, "M_BAD_JSON", "'content' must be an object")
        return "PUT", f"/_matrix/client/v3/rooms/{room}/send/{event_type}/{txn_id}", content
    if kind == "typing":
        user = _segment(frame, "user_id")
        body = {k: frame[k] for k in ("typing", "timeout") if k in frame}
        return "PUT", f"/_matrix/client/v3/rooms/{room}/typing/{user}", body
    if kind == "receipt":
        receipt_type = _segment(frame, "receipt_type", "m.read")
        event_id = _segment(frame, "event_id")
        body = {"thread_id": frame["thread_id"]} if "thread_id" in frame else {}
        return "POST", f"/_matrix/client/v3/rooms/{room}/receipt/{receipt_type}/{event_id}", body
    if kind == "read_markers":
        body = {k: v for k, v in frame.items() if k.startswith("m.")}
        return "POST", f"/_matrix/client/v3/rooms/{room}/read_markers", body
    raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown frame type {kind!r}")


REQUEST_TYPES = frozenset({"request", "send", "typing", "receipt", "read_markers"})


def _segment(frame: dict[str, Any], key: str, default: str | None = None) -> str:
    value = frame.get(key, default)
    if value is None:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing '{key}'")
    if not isinstance(value, str) or not value:
        raise MatrixError(400, "M_INVALID_PARAM", f"'{key}' must be a non-empty string")
    return quote(value, safe="")


def close_reason(text: str) -> str:
    """A close frame's reason is at most 123 bytes of UTF-8."""
    data = text.encode()
    return text if len(data) <= 123 else data[:123].decode(errors="ignore")
