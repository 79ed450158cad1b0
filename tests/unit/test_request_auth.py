"""X-Matrix request authentication (crypto/request_auth.py): header parsing per RFC 9110 and the
server-server spec, and signature verification against a keyring."""

from __future__ import annotations

from typing import Any

import pytest
from signedjson.key import decode_signing_key_base64, generate_signing_key

from homeserver.core.errors import MatrixError
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.request_auth import XMatrixAuth, parse_x_matrix, sign_request, verify_request

# The spec's test key (appendices: "Signing JSON" examples use this seed).
ORIGIN_KEY = ServerSigningKey.from_signing_key(
    decode_signing_key_base64("ed25519", "1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
)
OTHER_KEY = ServerSigningKey.from_signing_key(generate_signing_key("1"))
ORIGIN = "origin.example"
US = "dest.example"
NOW = 1_700_000_000_000


# -- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'X-Matrix origin="origin.example",destination="dest.example",key="ed25519:1",sig="ABC"',
            XMatrixAuth("origin.example", "dest.example", "ed25519:1", "ABC"),
        ),
        # names are case-insensitive, order does not matter, whitespace around commas is allowed
        (
            'X-Matrix  SIG="ABC" ,\tKey="ed25519:1", Origin="origin.example"',
            XMatrixAuth("origin.example", None, "ed25519:1", "ABC"),
        ),
        # unquoted values, colons included (the spec's compatibility rule)
        (
            "X-Matrix origin=origin.example:8448,key=ed25519:1,sig=ABC",
            XMatrixAuth("origin.example:8448", None, "ed25519:1", "ABC"),
        ),
        # backslash escapes in quoted values, a comma inside quotes, unknown parameters ignored
        (
            r'X-Matrix origin="origin.example",key="ed25519:a\"b",sig="A,B",future="x, y"',
            XMatrixAuth("origin.example", None, 'ed25519:a"b', "A,B"),
        ),
        ('x-matrix origin="o.example",key="k",sig="s"', XMatrixAuth("o.example", None, "k", "s")),
    ],
)
def test_parse_valid_headers(header: str, expected: XMatrixAuth) -> None:
    assert parse_x_matrix(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        'X-Matrix key="ed25519:1",sig="ABC"',  # no origin
        'X-Matrix origin="origin.example",sig="ABC"',  # no key
        'X-Matrix origin="origin.example",key="ed25519:1"',  # no sig
        'X-Matrix origin="origin.example",key="ed25519:1",sig=""',  # empty sig
        'X-Matrix origin="origin.example",destination="",key="ed25519:1",sig="A"',  # empty destination
        'X-Matrix origin="not a server",key="ed25519:1",sig="ABC"',  # invalid server name
        'X-Matrix origin="origin.example",key="ed25519:1",sig="ABC',  # unterminated quote
        'X-Matrix origin="origin.example" key="ed25519:1",sig="ABC"',  # missing comma
        'X-Matrix origin="origin.example",origin="x.example",key="k",sig="s"',  # duplicate name
        'X-Matrix origin="origin.example",key,sig="s"',  # parameter without value
        "X-Matrix",
        'Bearer origin="origin.example",key="k",sig="s"',
        "",
    ],
)
def test_parse_malformed_headers(header: str) -> None:
    with pytest.raises(MatrixError) as err:
        parse_x_matrix(header)
    assert (err.value.status, err.value.errcode) == (400, "M_UNAUTHORIZED")


# -- verification ---------------------------------------------------------------------------------


def keyring(*keys: tuple[str, ServerSigningKey, int]) -> InMemoryKeyring:
    return InMemoryKeyring(
        tuple(ServerVerifyKey(name, key.key_id, key.verify_key, until) for name, key, until in keys)
    )


TRUSTING = keyring((ORIGIN, ORIGIN_KEY, NOW + 3_600_000))


async def verify(
    headers: list[str],
    *,
    ring: InMemoryKeyring = TRUSTING,
    method: str = "PUT",
    uri: str = "/_matrix/federation/v1/send/1",
    content: Any = None,
) -> str:
    return await verify_request(
        ring, server_name=US, method=method, uri=uri, authorization=headers, content=content, now_ms=NOW
    )


def signed(
    *,
    key: ServerSigningKey = ORIGIN_KEY,
    origin: str = ORIGIN,
    destination: str = US,
    method: str = "PUT",
    uri: str = "/_matrix/federation/v1/send/1",
    content: Any = None,
) -> str:
    return sign_request(key, origin=origin, destination=destination, method=method, uri=uri, content=content)


async def assert_unauthorized(headers: list[str], **kw: Any) -> MatrixError:
    with pytest.raises(MatrixError) as err:
        await verify(headers, **kw)
    assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED")
    return err.value


async def test_valid_signature_with_and_without_content() -> None:
    body = {"pdus": [], "origin": ORIGIN}
    assert await verify([signed(content=body)], content=body) == ORIGIN
    assert await verify([signed(method="GET", uri="/q?x=1")], method="GET", uri="/q?x=1") == ORIGIN


async def test_missing_destination_is_accepted_and_signed_for_us() -> None:
    # Servers before spec v1.3 omit `destination`; the signed JSON still names the receiver.
    header = signed().replace(f',destination="{US}"', "")
    assert "destination" not in header
    assert await verify([header]) == ORIGIN


async def test_forged_signature_is_rejected() -> None:
    forged = signed(key=OTHER_KEY).replace(OTHER_KEY.key_id, ORIGIN_KEY.key_id)
    err = await assert_unauthorized([forged])
    assert "Invalid signature" in err.error


async def test_tampered_request_is_rejected() -> None:
    header = signed(content={"a": 1})
    await assert_unauthorized([header], content={"a": 2})
    await assert_unauthorized([header], content={"a": 1}, uri="/_matrix/federation/v1/send/2")
    await assert_unauthorized([header], content={"a": 1}, method="POST")
    await assert_unauthorized([header], content=None)


async def test_garbage_signature_is_rejected() -> None:
    header = signed().rsplit("sig=", 1)[0] + 'sig="!!not-base64!!"'
    await assert_unauthorized([header])


async def test_wrong_destination_is_rejected_before_any_key_lookup() -> None:
    err = await assert_unauthorized([signed(destination="elsewhere.example")], ring=InMemoryKeyring())
    assert err.error == "Destination mismatch in auth header"


async def test_unknown_or_expired_key_is_rejected() -> None:
    await assert_unauthorized([signed()], ring=InMemoryKeyring())
    await assert_unauthorized([signed()], ring=keyring((ORIGIN, ORIGIN_KEY, NOW - 1)))
    # A key known for another server does not vouch for this origin.
    await assert_unauthorized([signed()], ring=keyring(("other.example", ORIGIN_KEY, NOW + 1)))


async def test_missing_header_is_rejected() -> None:
    err = await assert_unauthorized([])
    assert err.error == "Missing Authorization headers"
    await assert_unauthorized(["Bearer abc"])


async def test_several_headers_must_agree_on_origin() -> None:
    await assert_unauthorized([signed(), signed(key=OTHER_KEY, origin="other.example")])


async def test_every_known_key_must_verify() -> None:
    second = ServerSigningKey.from_signing_key(generate_signing_key("2"))
    ring = keyring((ORIGIN, ORIGIN_KEY, NOW + 1), (ORIGIN, second, NOW + 1))
    assert await verify([signed(), signed(key=second)], ring=ring) == ORIGIN
    # one good and one bad signature from known keys: rejected
    bad_second = signed(key=OTHER_KEY).replace(OTHER_KEY.key_id, second.key_id)
    await assert_unauthorized([signed(), bad_second], ring=ring)
    # an unknown extra key is skipped as long as one known key verifies
    assert await verify([signed(), signed(key=second)], ring=keyring((ORIGIN, ORIGIN_KEY, NOW + 1))) == ORIGIN
