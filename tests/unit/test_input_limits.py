"""The pure checks behind bad-input handling: NUL and depth in decoded JSON, canonical event values,
64-bit query integers, stream token positions, bcrypt's 72-byte input (docs/input-validation.md)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.core.errors import MatrixError
from homeserver.core.json import (
    MAX_EVENT_CONTENT_DEPTH,
    canonical_problem,
    check_canonical_values,
    contains_nul,
    depth_exceeds,
)
from homeserver.core.tokens import PaginationToken, StreamToken
from homeserver.http.params import get_int, parse_int64, query_int
from homeserver.http.routing import parse_json_body
from homeserver.services.passwords import PasswordHasher


def nested(depth: int) -> Any:
    value: Any = {}
    for i in range(depth - 1):
        value = {"k": value} if i % 2 else [value]
    return value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\x00", True),
        ({"k": "a"}, False),
        ({"k\x00": 1}, True),
        ([1, {"a": [None, True, "x\x00y"]}], True),
        ([1, 2.5, None, {"a": "b"}], False),
        ("\\u0000", False),
    ],
)
def test_contains_nul(value: Any, expected: bool) -> None:
    assert contains_nul(value) is expected


def test_depth_exceeds() -> None:
    assert not depth_exceeds(nested(128))
    assert depth_exceeds(nested(129))
    assert not depth_exceeds(nested(5), 5) and depth_exceeds(nested(6), 5)
    assert not depth_exceeds("scalar", 0)
    assert not depth_exceeds(nested(5000), 10_000)  # no recursion: hostile depth is fine to walk


@pytest.mark.parametrize(
    ("content", "strict", "problem"),
    [
        ({"a": 1, "b": [True, None, "s"]}, True, None),
        ({"a": 2**53 - 1, "b": -(2**53 - 1)}, True, None),
        ({"a": 2**53}, True, "integer out of range"),
        ({"a": [-(2**53)]}, True, "integer out of range"),
        ({"a": {"b": 1.5}}, True, "floats"),
        ({"a": 1.5}, False, None),
        ({"a": 2**63 - 1}, False, None),
        ({"a": 2**64 - 1}, False, "integer out of range"),
        ({"a": object()}, False, "not a JSON value"),
        (nested(MAX_EVENT_CONTENT_DEPTH), True, None),
        (nested(MAX_EVENT_CONTENT_DEPTH + 1), True, "nested too deeply"),
    ],
)
def test_canonical_problem(content: Any, strict: bool, problem: str | None) -> None:
    found = canonical_problem(content, strict=strict, max_depth=MAX_EVENT_CONTENT_DEPTH)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
    assert check_canonical_values({"x": 1}) and not check_canonical_values({"x": 0.5})


@pytest.mark.parametrize(
    ("data", "errcode"),
    [
        (b"{", "M_NOT_JSON"),
        (b'{"a": NaN}', "M_NOT_JSON"),
        (b'{"a": "\\ud800"}', "M_NOT_JSON"),
        (b'{"a": "\\u0000"}', "M_BAD_JSON"),
        (b'{"\\u0000": 1}', "M_BAD_JSON"),
        (b"[" * 129 + b"]" * 129, "M_BAD_JSON"),
        (b"[" * 2000 + b"]" * 2000, "M_BAD_JSON"),
    ],
)
def test_parse_json_body_refuses(data: bytes, errcode: str) -> None:
    with pytest.raises(MatrixError) as info:
        parse_json_body(data)
    assert (info.value.status, info.value.errcode) == (400, errcode)


def test_parse_json_body_accepts() -> None:
    assert parse_json_body(b'{"a": "\\\\u0000"}') == {"a": "\\u0000"}
    assert parse_json_body(b'{"a": "[[[[{{{{"}') == {"a": "[[[[{{{{"}
    assert parse_json_body(b"[" * 128 + b"]" * 128) is not None


@pytest.mark.parametrize(
    ("raw", "value"),
    [("0", 0), ("-5", -5), ("+7", 7), ("0009", 9), (str(2**63 - 1), 2**63 - 1), (str(-(2**63)), -(2**63))],
)
def test_parse_int64_accepts(raw: str, value: int) -> None:
    assert parse_int64(raw, "x") == value


@pytest.mark.parametrize(
    "raw", ["", "-", "1.5", "1e3", " 1", "1_000", "٣", "0x10", str(2**63), str(-(2**63) - 1), "9" * 5000]
)
def test_parse_int64_refuses(raw: str) -> None:
    with pytest.raises(MatrixError) as info:
        parse_int64(raw, "x")
    assert (info.value.status, info.value.errcode) == (400, "M_INVALID_PARAM")


def test_query_int_bounds() -> None:
    assert query_int({"n": "500"}, "n", 10, minimum=1, maximum=100) == 100
    assert query_int({"n": "0"}, "n", 10, minimum=1) == 1
    assert query_int({}, "n", 10) == 10
    assert query_int({"n": "-3"}, "n", minimum=-10) == -3
    for query in ({"n": "-1"}, {"n": str(2**64)}):
        with pytest.raises(MatrixError):
            query_int(query, "n", minimum=0)
        with pytest.raises(MatrixError):
            query_int(query, "n")


def test_get_int_bounds() -> None:
    assert get_int({"n": 2**63 - 1}, "n") == 2**63 - 1
    with pytest.raises(MatrixError) as info:
        get_int({"n": 2**64 - 1}, "n")
    assert info.value.errcode == "M_BAD_JSON"


def test_stream_token_positions() -> None:
    assert StreamToken.parse(f"s{2**63 - 1}_2").events == 2**63 - 1
    assert PaginationToken.parse(f"t5-{2**63 - 1}").stream == 2**63 - 1
    for bad in (f"s{2**63}", f"s1_{2**63}", "s+1", "s 1", "s1_-2", "s" + "1_" * 70 + "1", "s١"):
        with pytest.raises(MatrixError):
            StreamToken.parse(bad)
    for bad in (f"s{2**63}", f"t1-{2**63}", "s+1", "s"):
        with pytest.raises(MatrixError):
            PaginationToken.parse(bad)


async def test_bcrypt_long_passwords() -> None:
    hasher = PasswordHasher(rounds=4)
    long_password = "비밀번호" * 10  # 120 bytes
    stored = await hasher.hash(long_password)
    assert await hasher.check(long_password, stored)
    # bcrypt only ever used the first 72 bytes; so does this (as Synapse does).
    assert await hasher.check(long_password[:24] + "다른", stored)
    assert not await hasher.check(long_password[:23], stored)
    peppered = PasswordHasher(rounds=4, pepper="pepper")
    assert await peppered.check("p" * 100, await peppered.hash("p" * 100))
    assert not await hasher.check("anything", "not a bcrypt hash")
