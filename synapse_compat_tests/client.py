"""A tiny synchronous Matrix HTTP client (stdlib only) and Synapse shared-secret registration."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"
ADMIN_REGISTER = "/_synapse/admin/v1/register"
DEFAULT_PASSWORD = "correct horse battery staple 1"  # long enough for any password policy

_UNSET: Any = object()


def q(segment: str) -> str:
    """Percent-encode one path segment (user ids, device ids, room ids...)."""
    return urllib.parse.quote(segment, safe="")


@dataclass
class Response:
    """One HTTP response. Unpacks as ``status, body, headers``."""

    status: int
    body: Any  # parsed JSON, or None when the body is empty or not JSON
    headers: http.client.HTTPMessage
    raw: bytes = b""
    method: str = ""
    url: str = ""

    def __iter__(self) -> Iterator[Any]:
        return iter((self.status, self.body, self.headers))

    @property
    def json(self) -> Any:
        return self.body

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def describe(self) -> str:
        text = self.raw[:2000].decode("utf-8", "replace")
        return f"{self.method} {self.url} -> {self.status}: {text}"


@dataclass
class MatrixClient:
    """Synchronous HTTP client bound to a base URL and (optionally) an access token.

    Paths are absolute (``/_matrix/client/v3/...``); path segments must be quoted by the caller
    with :func:`q`. ``json_body`` is sent as JSON; ``data`` sends raw bytes (for malformed bodies).
    """

    base_url: str
    access_token: str | None = None
    timeout: float = 30.0
    default_headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"bad base URL {self.base_url!r}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path

    def with_token(self, access_token: str | None) -> MatrixClient:
        return MatrixClient(self.base_url, access_token, self.timeout, dict(self.default_headers))

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = _UNSET,
        *,
        data: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        access_token: str | None = _UNSET,
    ) -> Response:
        url = self._prefix + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(
                {k: _param(v) for k, v in params.items()}
            )
        hdrs: dict[str, str] = {"Accept": "application/json", **self.default_headers}
        body: bytes | None = None
        if json_body is not _UNSET:
            body = json.dumps(json_body).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        elif data is not None:
            body = data
            hdrs["Content-Type"] = "application/json"
        token = self.access_token if access_token is _UNSET else access_token
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if headers:
            hdrs.update(headers)
        conn_cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(self._host, self._port, timeout=self.timeout)
        try:
            conn.request(method, url, body=body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            status, resp_headers = resp.status, resp.headers
        finally:
            conn.close()
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        return Response(status, parsed, resp_headers, raw, method, f"{self.base_url}{path}")

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json_body: Any = _UNSET, **kw: Any) -> Response:
        return self.request("POST", path, json_body, **kw)

    def put(self, path: str, json_body: Any = _UNSET, **kw: Any) -> Response:
        return self.request("PUT", path, json_body, **kw)

    def delete(self, path: str, json_body: Any = _UNSET, **kw: Any) -> Response:
        return self.request("DELETE", path, json_body, **kw)

    def options(self, path: str, **kw: Any) -> Response:
        return self.request("OPTIONS", path, **kw)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- shared-secret registration


def random_localpart(prefix: str = "compat") -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def registration_mac(
    shared_secret: str, nonce: str, username: str, password: str, admin: bool, user_type: str | None = None
) -> str:
    """HMAC-SHA1 over nonce, username, password, admin/notadmin (and user_type), NUL-separated."""
    mac = hmac.new(shared_secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(username.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf-8"))
    return mac.hexdigest()


def get_registration_nonce(client: MatrixClient) -> str:
    resp = client.get(ADMIN_REGISTER, access_token=None)
    if resp.status != 200 or not isinstance(resp.body, dict) or not isinstance(resp.body.get("nonce"), str):
        raise AssertionError(f"could not get a registration nonce: {resp.describe()}")
    return resp.body["nonce"]


def register_user(
    client: MatrixClient,
    shared_secret: str,
    localpart: str | None = None,
    password: str = DEFAULT_PASSWORD,
    admin: bool = False,
    displayname: str | None = None,
) -> tuple[str, str, str]:
    """Create a user through ``/_synapse/admin/v1/register``; returns (user_id, access_token, device_id)."""
    localpart = localpart or random_localpart()
    nonce = get_registration_nonce(client)
    body: dict[str, Any] = {
        "nonce": nonce,
        "username": localpart,
        "password": password,
        "admin": admin,
        "mac": registration_mac(shared_secret, nonce, localpart, password, admin),
    }
    if displayname is not None:
        body["displayname"] = displayname
    resp = client.post(ADMIN_REGISTER, body, access_token=None)
    if resp.status != 200 or not isinstance(resp.body, dict):
        raise AssertionError(f"shared-secret registration failed: {resp.describe()}")
    return resp.body["user_id"], resp.body["access_token"], resp.body["device_id"]
