"""RoomTailCache.between (bisected) answers exactly what a scan of the room's tail answers."""

from __future__ import annotations

import random

from homeserver.core.streams import EventsRow
from homeserver.state.indexes import RoomStreamIndex, RoomTailCache


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
