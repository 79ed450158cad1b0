"""Tokens whose positions do not fit a BIGINT are 400 M_INVALID_PARAM, on both engines.

Found by the fuzzer: `from=s99999999999999999999` on /threads and a search `next_batch` carrying such
a position reached SQL and failed with OverflowError (SQLite) or DataError (PostgreSQL): a 500.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.core.tokens import PaginationToken, StreamToken, parse_position

from .helpers import auth, register

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"
HUGE = "99999999999999999999"


def _search_batch(order: str, mode: str, position: str) -> str:
    raw = f"{order}\n{mode}\n{position}\n".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def _room(client: Any) -> tuple[dict[str, str], str]:
    user = await register(client)
    headers = auth(user["access_token"])
    resp = await client.post(f"{V3}/createRoom", json={"name": "tokens"}, headers=headers)
    room_id = (await resp.json())["room_id"]
    await client.put(
        f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t1",
        json={"msgtype": "m.text", "body": "hello"},
        headers=headers,
    )
    return headers, room_id


async def test_out_of_range_tokens_are_invalid_param(any_engine_client: Any) -> None:
    client = any_engine_client
    headers, room_id = await _room(client)
    room = quote(room_id)
    for token in (f"s{HUGE}", f"t1-{HUGE}", "s9223372036854775808", "s-5", "s\u0663"):
        for url in (
            f"{V1}/rooms/{room}/threads?from={quote(token)}",
            f"{V3}/rooms/{room}/messages?dir=b&from={quote(token)}",
            f"{V3}/sync?timeout=0&since={quote(token)}",
        ):
            resp = await client.get(url, headers=headers)
            body = await resp.json()
            assert (resp.status, body.get("errcode")) == (400, "M_INVALID_PARAM"), (url, body)
    search = {"search_categories": {"room_events": {"search_term": "hello"}}}
    for order, mode in (("recent", "r"), ("rank", "k"), ("recent", "w")):
        batch = _search_batch(order, mode, HUGE)
        search["search_categories"]["room_events"]["order_by"] = order
        resp = await client.post(f"{V3}/search?next_batch={batch}", json=search, headers=headers)
        body = await resp.json()
        assert (resp.status, body.get("errcode")) == (400, "M_INVALID_PARAM"), body
    # The largest BIGINT is still a well-formed position: an empty page, not an error.
    resp = await client.get(f"{V1}/rooms/{room}/threads?from=s9223372036854775807", headers=headers)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("text", ["", "-1", "+1", " 1", "1_0", "\u0663", "9223372036854775808", "1" * 30])
def test_parse_position_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_position(text)


def test_parse_position_and_round_trips() -> None:
    assert parse_position("0") == 0 and parse_position("9223372036854775807") == 2**63 - 1
    assert PaginationToken.parse(PaginationToken(42).serialize()) == PaginationToken(42)
    token = StreamToken(events=5, receipts=2**63 - 1)
    assert StreamToken.parse(token.serialize()) == token
