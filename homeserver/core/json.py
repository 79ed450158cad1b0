"""Fast JSON for the wire (orjson) and canonical JSON for signing and hashing."""

from __future__ import annotations

from typing import Any

import orjson
from canonicaljson import encode_canonical_json

JSONDict = dict[str, Any]


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def dumps_str(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def canonical(obj: Any) -> bytes:
    """Canonical JSON as the Matrix spec defines it (sorted keys, no spaces, UTF-8)."""
    return encode_canonical_json(obj)


# The spec limits integers in events to the IEEE754 safe range.
CANONICAL_INT_MIN = -(2**53) + 1
CANONICAL_INT_MAX = 2**53 - 1


def check_canonical_values(obj: Any, _depth: int = 0) -> bool:
    """True when every number is an integer in the safe range and no float appears."""
    if _depth > 100:
        return False
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return True
    if isinstance(obj, int):
        return CANONICAL_INT_MIN <= obj <= CANONICAL_INT_MAX
    if isinstance(obj, float):
        return False
    if isinstance(obj, dict):
        return all(isinstance(k, str) and check_canonical_values(v, _depth + 1) for k, v in obj.items())
    if isinstance(obj, list):
        return all(check_canonical_values(v, _depth + 1) for v in obj)
    return False
