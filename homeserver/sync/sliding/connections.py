"""Per-connection state: what each sliding sync connection was sent, per position.

A connection is (user, device, conn_id). Each response that carries news gets a new position
`<n>/<stream token>`; the state after it (which rooms were sent up to which stream position, with
which parameters and summary fields; what each list held) is kept under `n`. A request from `pos`
builds on the state under `n`, so a retried `pos` computes against the same state and gets the
same answer; positions older than the one the client used are dropped (it has moved on).

Kept in memory, bounded (least recently used connections are dropped, and each connection keeps
a few positions). Synapse persists this; here a restart or an eviction makes the next request's
`pos` unknown, and the client gets `M_UNKNOWN_POS` and starts the connection again, which every
sliding sync client handles. See docs/sliding-sync.md.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from homeserver.core.errors import MatrixError
from homeserver.core.tokens import StreamToken
from homeserver.sync.sliding.request import StateWant


@dataclass(frozen=True, slots=True)
class SentRoom:
    """A room as the connection last received it."""

    membership: str
    # The room's events up to this stream position were delivered (or deliberately skipped).
    events_pos: int
    required_state: frozenset[StateWant]
    timeline_limit: int
    meta: tuple[object, ...]
    counts: tuple[int, int]
    # Member events already sent ($LAZY): user_id -> event_id.
    members: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class ConnState:
    rooms: dict[str, SentRoom] = field(default_factory=dict)
    lists: dict[str, tuple[object, ...]] = field(default_factory=dict)

    def copy(self) -> ConnState:
        return ConnState(dict(self.rooms), dict(self.lists))


@dataclass(slots=True)
class _Connection:
    positions: dict[int, ConnState] = field(default_factory=dict)
    # position -> the position the request that created it came from (0: none)
    parents: dict[int, int] = field(default_factory=dict)


def unknown_pos(message: str = "Unknown position") -> MatrixError:
    return MatrixError(400, "M_UNKNOWN_POS", message)


def parse_pos(pos: str) -> tuple[int, StreamToken]:
    """`<connection position>/<stream token>`; anything else is a position we cannot resume."""
    head, sep, token = pos.partition("/")
    if not sep or not head.isascii() or not head.isdigit() or len(head) > 19:
        raise unknown_pos("Malformed position; start a new connection without pos")
    try:
        return int(head), StreamToken.parse(token)
    except MatrixError:
        raise unknown_pos("Malformed position; start a new connection without pos") from None


class ConnectionStore:
    MAX_CONNECTIONS = 20_000
    MAX_POSITIONS = 4

    def __init__(self) -> None:
        self._conns: OrderedDict[tuple[str, str, str], _Connection] = OrderedDict()
        # Positions are unique over all connections and start from the clock, so a position from
        # another connection, or from before a restart, is never mistaken for a current one.
        self._next_pos = time.time_ns() // 1_000_000

    def start(self, key: tuple[str, str, str]) -> None:
        """A request without `pos`: the connection starts over."""
        self._conns.pop(key, None)

    def load(self, key: tuple[str, str, str], position: int | None) -> ConnState:
        if position is None:
            return ConnState()
        conn = self._conns.get(key)
        state = conn.positions.get(position) if conn is not None else None
        if conn is None or state is None:
            raise unknown_pos()
        self._conns.move_to_end(key)
        # The client has the state under `position`: older ones will never be used again.
        for old in [p for p in conn.positions if p < position]:
            del conn.positions[old]
            conn.parents.pop(old, None)
        return state

    def save(self, key: tuple[str, str, str], state: ConnState, parent: int | None) -> int:
        """The position for `state`, reached from `parent`: a retry of the same request that
        reaches the same state gets the same position again."""
        conn = self._conns.get(key)
        if conn is None:
            conn = self._conns[key] = _Connection()
            while len(self._conns) > self.MAX_CONNECTIONS:
                self._conns.popitem(last=False)
        self._conns.move_to_end(key)
        for position, existing in conn.positions.items():
            if conn.parents.get(position) == (parent or 0) and existing == state:
                return position
        position = self._next_pos
        self._next_pos += 1
        conn.positions[position] = state
        conn.parents[position] = parent or 0
        while len(conn.positions) > self.MAX_POSITIONS:
            oldest = min(conn.positions)
            del conn.positions[oldest]
            conn.parents.pop(oldest, None)
        return position

    def forget_device(self, user_id: str, device_id: str) -> None:
        for key in [k for k in self._conns if k[0] == user_id and k[1] == device_id]:
            del self._conns[key]
