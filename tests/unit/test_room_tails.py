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
