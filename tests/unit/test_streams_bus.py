"""The Stream enum, typed stream rows and the in-process stream bus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import orjson
import pytest

from homeserver.core.streams import (
    ROW_TYPES,
    AccountDataRow,
    DeviceListsRow,
    EventsRow,
    PresenceStreamRow,
    ReceiptRow,
    Stream,
    StreamRow,
    ToDeviceRow,
    TypingRow,
    row_from_json,
    row_to_json,
)
from homeserver.core.tokens import STREAM_NAMES, StreamToken
from homeserver.replication.bus import StreamBus
from homeserver.state.resolution import conflicted_keys, merge_unconflicted

SAMPLES: dict[Stream, StreamRow] = {
    Stream.EVENTS: EventsRow(
        7, "!r:x", "$e", "m.room.member", "@a:x", "@a:x", "join", None, device_id="D", txn_id="t"
    ),
    Stream.ACCOUNT_DATA: AccountDataRow(3, "@a:x", "", "m.direct"),
    Stream.RECEIPTS: ReceiptRow(4, "!r:x", "m.read", "@a:x", "$e", None),
    Stream.TYPING: TypingRow(5, "!r:x", ("@a:x", "@b:x")),
    Stream.PRESENCE: PresenceStreamRow(6, "@a:x", "online"),
    Stream.TO_DEVICE: ToDeviceRow(8, "@a:x", "DEV"),
    Stream.DEVICE_LISTS: DeviceListsRow(9, "@a:x", None),
}


def test_token_positions_follow_the_enum() -> None:
    assert STREAM_NAMES == tuple(s.value for s in Stream)
    assert [f.name for f in fields(StreamToken)] == list(STREAM_NAMES)
    token = StreamToken().with_stream(Stream.RECEIPTS, 12)
    assert token.get(Stream.RECEIPTS) == 12 and token.receipts == 12
    assert StreamToken.parse(token.serialize()) == token


@pytest.mark.parametrize("stream", list(SAMPLES))
def test_rows_travel_as_json(stream: Stream) -> None:
    row = SAMPLES[stream]
    assert isinstance(row, ROW_TYPES[stream])
    wire = orjson.loads(orjson.dumps(row_to_json(row)))
    assert row_from_json(stream, wire) == row


def test_events_row_liveness() -> None:
    row = SAMPLES[Stream.EVENTS]
    assert isinstance(row, EventsRow) and row.is_live and row.is_state
    for flag in ("outlier", "rejected", "soft_failed"):
        assert not EventsRow(1, "!r:x", "$e", "m.room.message", None, "@a:x", **{flag: True}).is_live


def test_bus_calls_consumers_in_order_and_survives_a_broken_one() -> None:
    bus = StreamBus()
    calls: list[tuple[str, int, int]] = []

    def first(position: int, rows: Sequence[StreamRow]) -> None:
        calls.append(("first", position, len(rows)))

    def broken(position: int, rows: Sequence[StreamRow]) -> None:
        raise RuntimeError("boom")

    def last(position: int, rows: Sequence[StreamRow]) -> None:
        calls.append(("last", position, len(rows)))

    bus.subscribe(Stream.RECEIPTS, first)
    bus.subscribe(Stream.RECEIPTS, broken)
    bus.subscribe(Stream.RECEIPTS, last)
    bus.subscribe(Stream.TYPING, lambda p, r: calls.append(("typing", p, 0)))
    bus.publish(Stream.RECEIPTS, 4, [SAMPLES[Stream.RECEIPTS]])
    assert calls == [("first", 4, 1), ("last", 4, 1)]
    assert bus.positions[Stream.RECEIPTS] == 4
    bus.publish(Stream.RECEIPTS, 3, [])  # positions never move back
    assert bus.positions[Stream.RECEIPTS] == 4


async def test_rows_since_reads_the_registered_source() -> None:
    bus = StreamBus()
    asked: list[tuple[int, int, int]] = []

    async def source(after: int, upto: int, limit: int) -> list[StreamRow]:
        asked.append((after, upto, limit))
        return [SAMPLES[Stream.ACCOUNT_DATA]]

    bus.register_source(Stream.ACCOUNT_DATA, source)
    bus.publish(Stream.ACCOUNT_DATA, 10, [])
    assert await bus.rows_since(Stream.ACCOUNT_DATA, 2) == [SAMPLES[Stream.ACCOUNT_DATA]]
    assert asked == [(2, 10, 1000)]
    with pytest.raises(LookupError):
        await bus.rows_since(Stream.TYPING, 0)


def test_trivial_merge_and_conflicts() -> None:
    base = {("m.room.create", ""): "$c", ("m.room.member", "@a:x"): "$a"}
    same = dict(base)
    assert merge_unconflicted([base, same]) == base
    with_topic = {**base, ("m.room.topic", ""): "$t"}
    assert merge_unconflicted([base, with_topic]) is None  # absent vs present conflicts (as in v2)
    assert conflicted_keys([base, with_topic]) == {("m.room.topic", "")}
