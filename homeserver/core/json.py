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

# How deeply request bodies (and so account data, filters, ...) may nest. orjson reads up to 1024
# levels but writes at most 254, so anything deeper would be accepted and then fail when it is
# stored or served (a /sync response wraps it in about ten more levels).
MAX_JSON_DEPTH = 128
# Event content: Synapse refuses events nested deeper than 127 levels (content at level 2), so
# content may nest 126 levels; other servers would refuse our deeper events over federation anyway.
MAX_EVENT_CONTENT_DEPTH = 126


def _walk(obj: Any) -> Any:
    """Yield (value, depth) for every value in a decoded JSON tree, object keys included (depth of
    their object), without recursion (input may be hostile)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        yield value, depth
        if isinstance(value, dict):
            for key, item in value.items():
                yield key, depth
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def contains_nul(obj: Any) -> bool:
    """True when any string in `obj` (object keys too) contains U+0000, which PostgreSQL cannot
    store in TEXT/JSONB and which no Matrix identifier or message legitimately holds."""
    if isinstance(obj, str):
        return "\x00" in obj
    return any(isinstance(v, str) and "\x00" in v for v, _ in _walk(obj))


def depth_exceeds(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when objects/arrays in `obj` nest more than `limit` levels (the top one is level 1)."""
    return any(depth > limit and isinstance(v, dict | list) for v, depth in _walk(obj))


def canonical_problem(obj: Any, *, strict: bool = True, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why `obj` cannot be an event's canonical JSON, or None when it can.

    Strict room versions (>= 6) allow no floats and only integers in the IEEE754 safe range; every
    version needs integers that fit in 64 bits (what orjson and the databases store) and no nesting
    deeper than `max_depth`.
    """
    low, high = (CANONICAL_INT_MIN, CANONICAL_INT_MAX) if strict else (-(2**63), 2**63 - 1)
    for value, depth in _walk(obj):
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int):
            if not low <= value <= high:
                return f"integer out of range: {value}"
        elif isinstance(value, float):
            if strict:
                return "floats are not allowed in events of this room version"
        elif isinstance(value, dict | list):
            if depth > max_depth:
                return "JSON nested too deeply"
        else:
            return f"not a JSON value: {type(value).__name__}"
    return None


def check_canonical_values(obj: Any) -> bool:
    """True when every number is an integer in the safe range and no float appears."""
    return canonical_problem(obj, strict=True) is None
