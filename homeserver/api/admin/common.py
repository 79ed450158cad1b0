"""Query parsing shared by the admin API routes (Synapse's parse_integer / parse_boolean rules)."""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.core.errors import MatrixError
from homeserver.http.params import parse_int64

ADMIN_V1 = ("/_synapse/admin/v1",)
ADMIN_V2 = ("/_synapse/admin/v2",)


def query_non_negative(query: Mapping[str, str], key: str, default: int | None) -> int | None:
    """An integer query parameter that must be >= 0 (400 M_INVALID_PARAM otherwise)."""
    raw = query.get(key)
    if raw is None:
        return default
    try:
        # The shared parser: plain digits within a BIGINT, so no value can overflow a query.
        value = parse_int64(raw, key)
    except MatrixError:
        value = -1
    if value < 0:
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Query parameter {key} must be a string representing a positive integer."
        )
    return value


def query_opt_bool(query: Mapping[str, str], key: str) -> bool | None:
    raw = query.get(key)
    if raw is None:
        return None
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise MatrixError(
        400, "M_INVALID_PARAM", f"Boolean query parameter {key!r} must be one of ['true', 'false']"
    )


def query_choice(query: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = query.get(key, default)
    if value not in choices:
        raise MatrixError(
            400,
            "M_INVALID_PARAM",
            f"Query parameter {key!r} must be one of [{', '.join(map(repr, choices))}]",
        )
    return value


def query_direction(query: Mapping[str, str], default: str = "f") -> bool:
    """`dir`: True for backwards (`b`)."""
    return query_choice(query, "dir", default, ("b", "f")) == "b"
