"""Typed access to JSON bodies and query strings with Matrix errors for bad input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from homeserver.core.errors import MatrixError

T = TypeVar("T")
_MISSING: Any = object()

# Integers from requests end up in SQL (BIGINT) and stream tokens: anything wider is refused.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _type_error(key: str, kind: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", f"'{key}' must be {kind}")


def _get(body: Mapping[str, Any], key: str, required: bool, default: Any) -> Any:
    if key not in body or body[key] is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing parameter '{key}'")
        return default
    return body[key]


def get_str(body: Mapping[str, Any], key: str, *, required: bool = False, default: Any = None) -> Any:
    value = _get(body, key, required, default)
    if value is not default and not isinstance(value, str):
        raise _type_error(key, "a string")
    return value


def get_bool(body: Mapping[str, Any], key: str, *, required: bool = False, default: Any = None) -> Any:
    value = _get(body, key, required, default)
    if value is not default and not isinstance(value, bool):
        raise _type_error(key, "a boolean")
    return value


def get_int(body: Mapping[str, Any], key: str, *, required: bool = False, default: Any = None) -> Any:
    value = _get(body, key, required, default)
    if value is not default and (isinstance(value, bool) or not isinstance(value, int)):
        raise _type_error(key, "an integer")
    # orjson reads integers up to 2**64 - 1 as int; only signed 64 bits fit a BIGINT column.
    if value is not default and not INT64_MIN <= value <= INT64_MAX:
        raise MatrixError(400, "M_BAD_JSON", f"'{key}' is out of range")
    return value


def get_dict(body: Mapping[str, Any], key: str, *, required: bool = False, default: Any = None) -> Any:
    value = _get(body, key, required, default)
    if value is not default and not isinstance(value, dict):
        raise _type_error(key, "an object")
    return value


def get_list(body: Mapping[str, Any], key: str, *, required: bool = False, default: Any = None) -> Any:
    value = _get(body, key, required, default)
    if value is not default and not isinstance(value, list):
        raise _type_error(key, "an array")
    return value


def get_str_list(body: Mapping[str, Any], key: str, *, required: bool = False, default: Any = None) -> Any:
    value = get_list(body, key, required=required, default=default)
    if value is not default and not all(isinstance(v, str) for v in value):
        raise _type_error(key, "an array of strings")
    return value


# -- query strings ---------------------------------------------------------------------------------


def check_path_and_query(path: Mapping[str, str], query: Iterable[tuple[str, str]]) -> None:
    """Refuse a NUL (`%00`) in any path parameter or query key/value with 400 M_INVALID_PARAM.

    Done once per request before the handler runs: PostgreSQL cannot store U+0000 in TEXT, so one
    such room id, state key or txn id would otherwise fail deep in a store or a group commit.
    """
    for name, value in path.items():
        if "\x00" in value:
            raise MatrixError(400, "M_INVALID_PARAM", f"Path parameter '{name}' contains a NUL character")
    for key, value in query:
        if "\x00" in key or "\x00" in value:
            raise MatrixError(400, "M_INVALID_PARAM", "Query parameters must not contain NUL characters")


def parse_int64(raw: str, what: str) -> int:
    """A decimal integer that fits a signed 64-bit column, else 400 M_INVALID_PARAM."""
    # int() also takes "1_000", " 12 " and non-ASCII digits; a query integer is plain [-]digits.
    body = raw[1:] if raw[:1] in ("-", "+") else raw
    if not body.isascii() or not body.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", f"{what} must be an integer")
    # Length first: int() of thousands of digits is slow, and refused by Python past 4300.
    digits = body.lstrip("0") or "0"
    value = int(digits) if len(digits) <= 19 else 2**64
    value = -value if raw[0] == "-" else value
    if not INT64_MIN <= value <= INT64_MAX:
        raise MatrixError(400, "M_INVALID_PARAM", f"{what} is out of range")
    return value


def query_int(
    query: Mapping[str, str],
    key: str,
    default: int | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """An integer query parameter. Values above `maximum` are capped (a client asking for too many
    gets the most we give); negative values are refused unless `minimum` is negative (as Synapse's
    parse_integer does by default), and smaller non-negative ones are raised to `minimum`."""
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    value = parse_int64(raw, f"Query parameter '{key}'")
    if value < 0 and (minimum is None or minimum >= 0):
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter '{key}' must not be negative")
    if minimum is not None and value < minimum:
        value = minimum
    if maximum is not None and value > maximum:
        value = maximum
    return value


def query_bool(query: Mapping[str, str], key: str, default: bool = False) -> bool:
    raw = query.get(key)
    if raw is None:
        return default
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter '{key}' must be true or false")
