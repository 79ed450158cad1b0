"""Canonical JSON: the spec's examples, and the fast encoder agreeing with the reference one."""

from __future__ import annotations

import random

import pytest

from homeserver.core.json import canonical
from homeserver.crypto.canonical import encode_canonical_json

# appendices.md "Canonical JSON" examples.
SPEC_EXAMPLES = [
    ({}, b"{}"),
    ({"one": 1, "two": "Two"}, b'{"one":1,"two":"Two"}'),
    ({"b": "2", "a": "1"}, b'{"a":"1","b":"2"}'),
    (
        {
            "auth": {
                "success": True,
                "mxid": "@john.doe:example.com",
                "profile": {
                    "display_name": "John Doe",
                    "three_pids": [
                        {"medium": "email", "address": "john.doe@example.org"},
                        {"medium": "msisdn", "address": "123456789"},
                    ],
                },
            }
        },
        b'{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        b'[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        b'"success":true}}',
    ),
    ({"a": "日本語"}, '{"a":"日本語"}'.encode()),
    ({"本": 2, "日": 1}, '{"日":1,"本":2}'.encode()),
    ({"a": "\u65e5"}, '{"a":"日"}'.encode()),
    ({"a": None}, b'{"a":null}'),
    ({"a": -0, "b": 10000000000}, b'{"a":0,"b":10000000000}'),
]


@pytest.mark.parametrize(("obj", "expected"), SPEC_EXAMPLES)
def test_spec_examples(obj: object, expected: bytes) -> None:
    assert encode_canonical_json(obj) == expected
    assert encode_canonical_json(obj, strict=False) == expected


def test_escapes_match_grammar() -> None:
    # Short escapes for \b \t \n \f \r, lowercase \u00XX for other controls, nothing else escaped.
    s = "".join(chr(i) for i in range(0x20)) + '"\\/\x7f\u2028\U0001f600'
    out = encode_canonical_json({"k": s})
    assert out == canonical({"k": s})
    assert b"\\b\\t\\n\\u000b\\f\\r" in out
    assert b"\\u001f" in out
    assert "\U0001f600".encode() in out


def test_sorting_is_by_code_point_not_utf16() -> None:
    # U+FFFF sorts before U+1F600 by code point, after it in UTF-16 code units.
    out = encode_canonical_json({"\U0001f600": 1, "\uffff": 2, "a": 3})
    assert out == '{"a":3,"\uffff":2,"\U0001f600":1}'.encode()


def test_falls_back_for_integers_beyond_64_bits() -> None:
    assert encode_canonical_json({"a": 2**70}) == b'{"a":1180591620717411303424}'


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if kind == 1:
        return rng.choice([True, False, None])
    if kind in (2, 3):
        alphabet = 'ab\x00\x01\x1f"\\/\n\t é日本\U0001f600\u2028\x7f\uffff'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(8)))
    if kind in (4, 5):
        return {str(_random_value(rng, 99)): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_fast_encoder_matches_reference_on_random_values() -> None:
    rng = random.Random(1234)
    for _ in range(2000):
        value = {"v": _random_value(rng)}
        assert encode_canonical_json(value) == canonical(value), value
