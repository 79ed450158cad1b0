"""Typed access to JSON bodies and query strings with Matrix errors for bad input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from homeserver.core.errors import MatrixError

T = TypeVar("T")
_MISSING: Any = object()


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


def query_int(
    query: Mapping[str, str],
    key: str,
    default: int | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter '{key}' must be an integer") from exc
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
