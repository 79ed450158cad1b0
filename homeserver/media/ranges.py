"""HTTP Range requests (RFC 9110 §14) on media downloads: single byte ranges."""

from __future__ import annotations

import re

_RANGE = re.compile(r"\A\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*\Z", re.IGNORECASE)


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte positions asked for, or None to send the whole body.

    Multi-range and malformed headers are ignored (the whole body is sent, as RFC 9110
    allows); a well-formed range outside the content raises RangeNotSatisfiable.
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if not match:
        return None
    first_s, last_s = match.groups()
    if not first_s and not last_s:
        return None
    if not first_s:  # suffix: the last N bytes
        suffix = int(last_s)
        if suffix == 0:
            raise RangeNotSatisfiable()
        if size == 0:
            raise RangeNotSatisfiable()
        return max(0, size - suffix), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable()
    return first, min(last, size - 1)
