"""RoomTailCache.between: the newest-first read stops at `limit` from the newest end and answers
exactly what filtering the whole tail would."""

from __future__ import annotations

import random

from homeserver.core.streams import EventsRow
from homeserver.state.indexes import RoomStreamIndex, RoomTailCache


def _naive(
    events: list[tuple[int, str]], after: int, upto: int, limit: int, newest_first: bool
) -> list[tuple[str, int]]:
    selected = [(eid, pos) for pos, eid in events if after < pos <= upto]
    if newest_first:
        selected.reverse()
    return selected[:limit]


def test_between_matches_the_whole_tail_filter() -> None:
    rng = random.Random(7)
    tails = RoomTailCache(RoomStreamIndex())
    events: list[tuple[int, str]] = []
    position = 0
    for _ in range(150):
        position += rng.randint(1, 3)
        room = "!a:x" if rng.random() < 0.7 else "!b:x"
        tails.on_events(
            position, [EventsRow(position, room, f"$e{position}", "m.room.message", None, "@u:x")]
        )
        if room == "!a:x":
            events.append((position, f"$e{position}"))
    for _ in range(300):
        after = rng.randint(0, position)
        upto = rng.randint(after, position + 2)
        limit = rng.randint(0, 12)
        for newest_first in (True, False):
            got = tails.between("!a:x", after, upto, limit, newest_first)
            assert got == _naive(events, after, upto, limit, newest_first), (after, upto, limit)


def _scan(
    events: list[tuple[int, str]], after: int, upto: int, limit: int, newest_first: bool
) -> list[tuple[str, int]]:
    selected = [(eid, pos) for pos, eid in events if after < pos <= upto]
    if newest_first:
        selected.reverse()
    return selected[:limit]


def test_between_matches_a_scan() -> None:
    rng = random.Random(7)
    streams = RoomStreamIndex()
    tails = RoomTailCache(streams)
    positions = sorted(rng.sample(range(1, 2_000), RoomTailCache.KEEP + 50))  # some drop out
    for pos in positions:
        row = EventsRow(pos, "!r:x", f"$e{pos}", "m.room.message", None, "@u:x")
        tails.on_events(pos, [row])
        streams.on_events(pos, [row])
    kept = [(pos, f"$e{pos}") for pos in positions[-RoomTailCache.KEEP :]]
    first_kept = kept[0][0]
    checked = 0
    for _ in range(2_000):
        after = rng.randrange(first_kept - 1, 2_001)
        upto = rng.randrange(after, 2_002)
        limit = rng.choice([1, 2, 11, 51, 500])
        for newest_first in (True, False):
            got = tails.between("!r:x", after, upto, limit, newest_first)
            if got is None:  # older than what is kept: the caller reads the database
                continue
            checked += 1
            assert got == _scan(kept, after, upto, limit, newest_first), (after, upto, limit, newest_first)
    assert checked > 1_000
    assert tails.between("!r:x", 0, 2_000, 10, True) is None  # dropped events: not covered
