"""The streams and their typed rows.

Every kind of change a client or a worker can catch up on is a `Stream`; each commit that moves a
stream is announced as `(stream, position, rows)` on the stream bus (`replication/bus.py`). Rows
are small frozen dataclasses of plain values, so the same announcement can later travel over Redis
to worker processes (`row_to_json` / `row_from_json`), and a consumer that missed some reads them
again from the database with `rows_since`.

The order of `Stream` is the order of the positions in a sync token (docs/stream-tokens.md): never
reorder it, only append.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any


class Stream(StrEnum):
    EVENTS = "events"
    ACCOUNT_DATA = "account_data"
    RECEIPTS = "receipts"
    TYPING = "typing"
    PRESENCE = "presence"
    TO_DEVICE = "to_device"
    DEVICE_LISTS = "device_lists"
    INVITES = "invites"


@dataclass(frozen=True, slots=True)
class EventsRow:
    """One event committed to the events stream.

    `outlier`, `rejected` and `soft_failed` events are announced too (a federation sender or an
    audit consumer may care) but never reach clients: consumers that feed /sync skip them
    (`is_live`). `device_id`/`txn_id` are set for a local client send with a transaction id: sync
    echoes `transaction_id` and presence counts the send as activity without a database read.
    """

    stream_ordering: int
    room_id: str
    event_id: str
    type: str
    state_key: str | None
    sender: str
    membership: str | None = None
    redacts: str | None = None
    outlier: bool = False
    rejected: bool = False
    soft_failed: bool = False
    device_id: str | None = None
    txn_id: str | None = None
    # An outlier that sets a local user's membership in a room this server is not in (a remote
    # invite, knock or invite rejection): membership consumers and the notifier take it.
    out_of_band: bool = False

    @property
    def is_live(self) -> bool:
        """A new event of the room's timeline that clients see and that may change the state."""
        return not (self.outlier or self.rejected or self.soft_failed)

    @property
    def is_state(self) -> bool:
        return self.state_key is not None


@dataclass(frozen=True, slots=True)
class AccountDataRow:
    stream_id: int
    user_id: str
    room_id: str  # '' for global account data
    type: str


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    stream_id: int
    room_id: str
    receipt_type: str
    user_id: str
    event_id: str
    thread_id: str | None
    # m.read.private: only the user's own syncs see it.
    private: bool = False


@dataclass(frozen=True, slots=True)
class TypingRow:
    position: int
    room_id: str
    user_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresenceStreamRow:
    position: int
    user_id: str
    state: str


@dataclass(frozen=True, slots=True)
class ToDeviceRow:
    position: int
    user_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class DeviceListsRow:
    stream_id: int
    user_id: str
    # Set for a change only one user may see (e.g. their own cross-signing signature of someone).
    visible_to: str | None = None


StreamRow = (
    EventsRow | AccountDataRow | ReceiptRow | TypingRow | PresenceStreamRow | ToDeviceRow | DeviceListsRow
)

ROW_TYPES: dict[Stream, type[Any]] = {
    Stream.EVENTS: EventsRow,
    Stream.ACCOUNT_DATA: AccountDataRow,
    Stream.RECEIPTS: ReceiptRow,
    Stream.TYPING: TypingRow,
    Stream.PRESENCE: PresenceStreamRow,
    Stream.TO_DEVICE: ToDeviceRow,
    Stream.DEVICE_LISTS: DeviceListsRow,
}


def row_to_json(row: StreamRow) -> list[Any]:
    """A row as a JSON array in field order (compact for Redis)."""
    return [list(v) if isinstance(v, tuple) else v for v in asdict(row).values()]


def row_from_json(stream: Stream, values: list[Any]) -> StreamRow:
    cls = ROW_TYPES[stream]
    names = [f.name for f in fields(cls)]
    kwargs = {n: tuple(v) if isinstance(v, list) else v for n, v in zip(names, values, strict=True)}
    row: StreamRow = cls(**kwargs)
    return row
