"""StreamIdGenerator.when_visible: callbacks run once readers can see the position, in order."""

from __future__ import annotations

from homeserver.core.streams import Stream
from homeserver.storage.streams import StreamIdGenerator


async def test_callback_waits_for_earlier_ids() -> None:
    stream = StreamIdGenerator(Stream.DEVICE_LISTS, 10)
    ran: list[str] = []
    stream.when_visible(10, lambda: ran.append("already visible"))
    assert ran == ["already visible"]
    async with stream.next() as first:
        async with stream.next() as second:
            pass
        stream.when_visible(second, lambda: ran.append("second"))
        assert ran == ["already visible"] and stream.current == 10
    assert (first, second, stream.current) == (11, 12, 12)
    assert ran == ["already visible", "second"]


async def test_failed_callback_does_not_break_the_writer() -> None:
    stream = StreamIdGenerator(Stream.DEVICE_LISTS, 0)
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    async with stream.next():
        stream.when_visible(1, boom)
        stream.when_visible(1, lambda: ran.append(1))
    assert ran == [1] and stream.current == 1


def test_advance_to_runs_callbacks() -> None:
    stream = StreamIdGenerator(Stream.DEVICE_LISTS, 0)
    ran: list[int] = []
    stream.when_visible(5, lambda: ran.append(5))
    stream.advance_to(4)
    assert ran == []
    stream.advance_to(5)
    assert ran == [5]
