"""StreamToken comparisons and serialisation read the positions as one tuple in field order, which
must be the token format's order (STREAM_NAMES)."""

from __future__ import annotations

import itertools
from dataclasses import fields

from homeserver.core.tokens import STREAM_NAMES, StreamToken


def test_field_order_is_the_format_order() -> None:
    assert tuple(f.name for f in fields(StreamToken)) == STREAM_NAMES
    token = StreamToken(*range(1, len(STREAM_NAMES) + 1))
    assert token.serialize() == "s" + "_".join(str(i) for i in range(1, len(STREAM_NAMES) + 1))
    assert StreamToken.parse(token.serialize()) == token


def test_advanced_past_and_max_per_stream() -> None:
    base = StreamToken(*([5] * len(STREAM_NAMES)))
    assert not base.advanced_past(base)
    for i, delta in itertools.product(range(len(STREAM_NAMES)), (-1, 1)):
        positions = [5] * len(STREAM_NAMES)
        positions[i] += delta
        other = StreamToken(*positions)
        assert other.advanced_past(base) is (delta > 0), (STREAM_NAMES[i], delta)
        assert base.advanced_past(other) is (delta < 0), (STREAM_NAMES[i], delta)
        assert other.max(base) == base.max(other) == StreamToken(*[max(p, 5) for p in positions])
