"""X-Matrix request authentication (server-server API, "Request Authentication").

A server signs `{method, uri, origin, destination, content}` with its ed25519 key and sends the
signature as `Authorization: X-Matrix origin="a.example",destination="b.example",key="ed25519:k",
sig="..."`. Parsing follows RFC 9110 §11.4 auth-params (quoted values with backslash escapes, names
case-insensitive, any order, unknown names ignored) plus the spec's leniency for unquoted values that
contain colons. Errors and status codes follow Synapse: a malformed header is 400, a missing header,
a foreign destination or a bad signature is 401, all with `M_UNAUTHORIZED`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.crypto.keyring import Keyring
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.signing import sign_json

SCHEME = "X-Matrix"
_WS = " \t"


@dataclass(frozen=True, slots=True)
class XMatrixAuth:
    origin: str
    destination: str | None  # optional for servers older than spec v1.3
    key: str
    sig: str


def malformed(reason: str = "Malformed Authorization header") -> MatrixError:
    return MatrixError(400, "M_UNAUTHORIZED", reason)


def unauthorized(reason: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", reason)


def is_x_matrix(header: str) -> bool:
    scheme = header.split(" ", 1)[0]
    return scheme.lower() == SCHEME.lower()


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and (text[i] in _WS or text[i] == ","):
            i += 1
        if i >= n:
            return params
        eq = text.find("=", i)
        if eq < 0:
            raise malformed()
        name = text[i:eq].strip(_WS).lower()
        if not name or any(ch in _WS + '",' for ch in name):
            raise malformed()
        i = eq + 1
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] == '"':
            value_chars: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise malformed()
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    value_chars.append(text[i + 1])
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                else:
                    value_chars.append(ch)
                    i += 1
            value = "".join(value_chars)
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip(_WS)
            if not value or any(ch in _WS + '"' for ch in value):
                raise malformed()
            i = end
        if name in params:
            raise malformed()
        params[name] = value
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] != ",":
            raise malformed()


def parse_x_matrix(header: str) -> XMatrixAuth:
    """Parse one `Authorization: X-Matrix ...` value; raises 400 M_UNAUTHORIZED when malformed."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != SCHEME.lower():
        raise malformed()
    params = _parse_params(rest)
    try:
        origin, key, sig = params["origin"], params["key"], params["sig"]
    except KeyError as exc:
        raise malformed(f"Malformed Authorization header: missing {exc.args[0]}") from exc
    if not ids.is_valid_server_name(origin):
        raise malformed("Malformed Authorization header: invalid origin")
    destination = params.get("destination")
    if not key or not sig or destination == "":
        raise malformed()
    return XMatrixAuth(origin=origin, destination=destination, key=key, sig=sig)


def request_json(
    method: str, uri: str, origin: str, destination: str, content: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The object whose signature the header carries (content only when the request has a body)."""
    obj: dict[str, Any] = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(
    key: ServerSigningKey,
    *,
    origin: str,
    destination: str,
    method: str,
    uri: str,
    content: Mapping[str, Any] | None = None,
) -> str:
    """The `Authorization` header value for an outgoing request (the form older servers accept)."""
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, key)
    sig = signed["signatures"][origin][key.key_id]
    return f'{SCHEME} origin="{origin}",destination="{destination}",key="{key.key_id}",sig="{sig}"'


async def verify_request(
    keyring: Keyring,
    *,
    server_name: str,
    method: str,
    uri: str,
    authorization: Sequence[str],
    content: Mapping[str, Any] | None,
    now_ms: int,
) -> str:
    """Check the X-Matrix header(s) of a request to `server_name`; returns the verified origin.

    Several headers (one per key) may be sent; they must name the same origin, every signature whose
    key the keyring knows must verify, and at least one key must be known.
    """
    parsed = [parse_x_matrix(h) for h in authorization if is_x_matrix(h)]
    if not parsed:
        raise unauthorized("Missing Authorization headers")
    origin = parsed[0].origin
    if any(p.origin != origin for p in parsed):
        raise unauthorized("Conflicting origins in Authorization headers")
    for p in parsed:
        if p.destination is not None and p.destination != server_name:
            raise unauthorized("Destination mismatch in auth header")
    signed = request_json(method, uri, origin, server_name, content)
    signed["signatures"] = {origin: {p.key: p.sig for p in parsed}}
    verified = False
    for p in parsed:
        verify_key = await keyring.get_verify_key(origin, p.key, valid_at_ts=now_ms)
        if verify_key is None:
            continue
        try:
            versioned = decode_verify_key_bytes(p.key, verify_key.encode())
            verify_signed_json(signed, origin, versioned)
        except (SignatureVerifyException, ValueError) as exc:
            raise unauthorized(f"Invalid signature for server {origin} with key {p.key}") from exc
        verified = True
    if not verified:
        keys = ", ".join(sorted(p.key for p in parsed))
        raise unauthorized(f"Failed to find any key to satisfy: {origin} with {keys}")
    return origin
