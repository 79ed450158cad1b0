"""Per-connection state: what each sliding sync connection was sent, per position.

A connection is (user, device, conn_id). Each response that carries news gets a new position
`<n>/<stream token>`; the state after it (which rooms were sent up to which stream position, with
which parameters and summary fields; what each list held) is kept under `n`. A request from `pos`
builds on the state under `n`, so a retried `pos` computes against the same state and gets the
same answer; positions older than the one the client used are dropped (it has moved on).

Persisted, as Synapse does (`sliding_sync_positions`, migration 0033): a position survives a
restart and is readable by any process on the database. Recently used connections are also kept
in memory (bounded LRU), so a request normally reads nothing; the database is read on a miss.
Each position is written once, when a response with news creates it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.core.json import dumps_str, loads
from homeserver.core.tokens import StreamToken
from homeserver.storage.stores.sliding_sync import SlidingSyncStore
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


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the state compares with."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def encode_state(state: ConnState) -> str:
    rooms = {
        room_id: [
            r.membership,
            r.events_pos,
            sorted(r.required_state),
            r.timeline_limit,
            r.meta,
            r.counts,
            r.members,
        ]
        for room_id, r in state.rooms.items()
    }
    return dumps_str({"rooms": rooms, "lists": state.lists})


def decode_state(raw: str) -> ConnState:
    data = loads(raw)
    rooms = {
        room_id: SentRoom(
            membership=r[0],
            events_pos=int(r[1]),
            required_state=frozenset((t, k) for t, k in r[2]),
            timeline_limit=int(r[3]),
            meta=_tuples(r[4]),
            counts=(int(r[5][0]), int(r[5][1])),
            members=_tuples(r[6]),
        )
        for room_id, r in data["rooms"].items()
    }
    return ConnState(rooms, {name: _tuples(sig) for name, sig in data["lists"].items()})


ConnKey = tuple[str, str, str]


class ConnectionStore:
    MAX_CONNECTIONS = 20_000
    MAX_POSITIONS = 4

    def __init__(self, store: SlidingSyncStore, clock: Callable[[], int]) -> None:
        self.store = store
        self.clock = clock
        self._conns: OrderedDict[ConnKey, _Connection] = OrderedDict()
        # Positions are unique over all connections and start from the clock, so a position from
        # another connection, or from before a restart, is never mistaken for a current one.
        self._next_pos = clock()

    async def start(self, key: ConnKey) -> None:
        """A request without `pos`: the connection starts over."""
        self._conns.pop(key, None)
        await self.store.delete_connection(*key)

    async def load(self, key: ConnKey, position: int | None) -> ConnState:
        if position is None:
            return ConnState()
        conn = self._conns.get(key)
        state = conn.positions.get(position) if conn is not None else None
        from_db = state is None
        if state is None:
            found = await self.store.load_position(position, *key)
            if found is None:
                raise unknown_pos()
            parent, raw = found
            state = decode_state(raw)
            conn = self._conns.get(key) or _Connection()
            self._remember(key, conn)
            conn.positions[position] = state
            conn.parents[position] = parent
        assert conn is not None
        self._conns.move_to_end(key)
        # The client has the state under `position`: older ones will never be used again.
        older = [p for p in conn.positions if p < position]
        for old in older:
            del conn.positions[old]
            conn.parents.pop(old, None)
        if older or from_db:
            await self.store.delete_positions_before(position, *key)
        return state

    def _remember(self, key: ConnKey, conn: _Connection) -> None:
        self._conns[key] = conn
        while len(self._conns) > self.MAX_CONNECTIONS:
            self._conns.popitem(last=False)

    async def save(self, key: ConnKey, state: ConnState, parent: int | None) -> int:
        """The position for `state`, reached from `parent`: a retry of the same request that
        reaches the same state gets the same position again."""
        conn = self._conns.get(key)
        if conn is None:
            conn = _Connection()
            self._remember(key, conn)
        self._conns.move_to_end(key)
        for position, existing in conn.positions.items():
            if conn.parents.get(position) == (parent or 0) and existing == state:
                return position
        position = self._next_pos = max(self._next_pos + 1, self.clock())
        await self.store.insert_position(
            position, *key, parent or 0, encode_state(state), self.clock(), keep=self.MAX_POSITIONS
        )
        conn.positions[position] = state
        conn.parents[position] = parent or 0
        while len(conn.positions) > self.MAX_POSITIONS:
            oldest = min(conn.positions)
            del conn.positions[oldest]
            conn.parents.pop(oldest, None)
        return position

    async def forget_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Devices deleted (or logged out): their connections go."""
        for key in [k for k in self._conns if k[0] == user_id and k[1] in device_ids]:
            del self._conns[key]
        await self.store.delete_device_connections(user_id, list(device_ids))
