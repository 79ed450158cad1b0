"""Stream tokens.

A sync token records one position per stream, so an incremental sync asks each stream only for what
moved since. Format (stable, documented in docs/stream-tokens.md):

    s<events>_<account_data>_<receipts>_<typing>_<presence>_<to_device>_<device_lists>_<invites>

Missing trailing components read as 0, unknown extra ones are ignored, so the format can grow.

A pagination token (for /messages, prev_batch) is a position in the event stream: `s<n>` means
"between the event with stream ordering n and the next one". Going backwards from `s<n>` returns
events with ordering <= n; forwards, events with ordering > n.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields, replace

from homeserver.core.errors import MatrixError
from homeserver.core.streams import Stream

# One position per stream, in the order of the Stream enum (the token format).
STREAM_NAMES = tuple(s.value for s in Stream)


# Stream positions are BIGINT columns: a component beyond them would fail in SQL (PostgreSQL) with a
# 500 instead of the 400 a made-up token deserves.
_MAX_POSITION = 2**63 - 1


def _position(part: str) -> int | None:
    """A non-negative decimal stream position, or None (int() alone also takes "+1", " 1", "١")."""
    if not part.isascii() or not part.isdigit() or len(part.lstrip("0")) > 19:
        return None
    value = int(part)
    return value if value <= _MAX_POSITION else None


@dataclass(frozen=True, slots=True)
class StreamToken:
    events: int = 0
    account_data: int = 0
    receipts: int = 0
    typing: int = 0
    presence: int = 0
    to_device: int = 0
    device_lists: int = 0
    invites: int = 0

    def serialize(self) -> str:
        return "s" + "_".join(map(str, _positions(self)))

    @classmethod
    def parse(cls, token: str) -> StreamToken:
        if not token or token[0] != "s":
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid stream token")
        # Unknown extra components are ignored, but still have to be positions.
        raw_parts = token[1:].split("_", 64)
        parts = [p for p in map(_position, raw_parts) if p is not None]
        if len(raw_parts) > 64 or len(parts) != len(raw_parts):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid stream token")
        values = dict(zip(STREAM_NAMES, parts, strict=False))
        return cls(**values)

    def get(self, stream: Stream) -> int:
        value: int = getattr(self, stream.value)
        return value

    def with_stream(self, stream: Stream, value: int) -> StreamToken:
        return replace(self, **{stream.value: value})

    def advanced_past(self, other: StreamToken) -> bool:
        """True when any stream of self is ahead of other."""
        # Every /sync compares tokens at least twice: one C call per token, not a field walk.
        return any(map(operator.gt, _positions(self), _positions(other)))

    def max(self, other: StreamToken) -> StreamToken:
        return StreamToken(*map(max, _positions(self), _positions(other)))


# The positions of a StreamToken as a tuple, in field (= token format) order.
_positions = operator.attrgetter(*(f.name for f in fields(StreamToken)))


@dataclass(frozen=True, slots=True)
class PaginationToken:
    stream: int

    def serialize(self) -> str:
        return f"s{self.stream}"

    @classmethod
    def parse(cls, token: str) -> PaginationToken:
        # A full sync token is accepted too (clients pass next_batch/prev_batch interchangeably).
        if not token or token[0] not in "st":
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token")
        head = token[1:].split("_", 1)[0]
        if token[0] == "t":  # t<topo>-<stream>: accept Synapse-shaped tokens for robustness
            head = head.rsplit("-", 1)[-1]
        elif head.startswith("-"):
            # s-<n>: a position in backfilled history (below every live event)
            value = _position(head[1:])
            if value is None:
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token")
            return cls(-value)
        value = _position(head)
        if value is None:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token")
        return cls(value)
