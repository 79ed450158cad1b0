"""Matrix errors: one exception type carrying HTTP status, errcode and extra body fields."""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """An error that maps straight to a Matrix error response body."""

    def __init__(self, status: int, errcode: str, error: str = "", **extra: Any) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error or errcode
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.error}
        body.update(self.extra)
        return body


def bad_json(msg: str = "Content not JSON or malformed") -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def not_json(msg: str = "Content not JSON.") -> MatrixError:
    return MatrixError(400, "M_NOT_JSON", msg)


def missing_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", msg)


def invalid_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", msg)


def forbidden(msg: str = "Forbidden") -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", msg)


def not_found(msg: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", msg)


def unrecognized(msg: str = "Unrecognized request", status: int = 404) -> MatrixError:
    return MatrixError(status, "M_UNRECOGNIZED", msg)


def too_large(msg: str = "Request too large") -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", msg)


def unknown(msg: str = "Internal server error", status: int = 500) -> MatrixError:
    return MatrixError(status, "M_UNKNOWN", msg)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    err = MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=retry_after_ms)
    err.headers["Retry-After"] = str(max(1, (retry_after_ms + 999) // 1000))
    return err


def unknown_token(msg: str = "Invalid access token passed.", soft_logout: bool = False) -> MatrixError:
    return MatrixError(401, "M_UNKNOWN_TOKEN", msg, soft_logout=soft_logout)


def missing_token() -> MatrixError:
    return MatrixError(401, "M_MISSING_TOKEN", "Missing access token.")


# How long clients are asked to wait before retrying while the database is unreachable.
DATABASE_RETRY_AFTER_MS = 5000


class DatabaseUnavailableError(MatrixError):
    """The database cannot be reached (down, restarting, network): a 503 the client retries.

    `detail` is a one-line description for operators (logs, startup errors); clients only see a
    generic message, never the server's addresses.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(
            503,
            "M_UNKNOWN",
            "The server's database is unavailable; try again shortly",
            retry_after_ms=DATABASE_RETRY_AFTER_MS,
        )
        self.detail = detail
        self.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_MS // 1000)
