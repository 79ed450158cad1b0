"""The long-poll timeout wheel: each future resolves with EXPIRED once its timeout passed (never
before it), a discarded one never, and a shorter deadline added later still fires first."""

from __future__ import annotations

import asyncio

from homeserver.notifier.deadlines import EXPIRED, TICK_S, Deadlines


async def test_deadlines_fire_in_order_and_discard() -> None:
    loop = asyncio.get_running_loop()
    wheel = Deadlines()
    started = loop.time()
    long = loop.create_future()
    dropped = loop.create_future()
    short = loop.create_future()
    resolved: dict[str, float] = {}
    for name, fut in (("long", long), ("short", short)):
        fut.add_done_callback(lambda _f, name=name: resolved.setdefault(name, loop.time()))
    wheel.add(long, 0.5)
    slot = wheel.add(dropped, 0.3)
    wheel.add(short, 0.05)  # earlier than the armed timer: must re-arm
    wheel.discard(slot, dropped)
    assert len(wheel) == 2
    assert await asyncio.wait_for(short, 2) == EXPIRED
    assert not long.done()
    assert await asyncio.wait_for(long, 2) == EXPIRED
    assert not dropped.done()
    assert len(wheel) == 0
    assert resolved["short"] - started >= 0.05 - TICK_S / 100
    assert resolved["long"] - started >= 0.5 - TICK_S / 100
    assert resolved["short"] < resolved["long"]


async def test_woken_future_is_left_alone() -> None:
    loop = asyncio.get_running_loop()
    wheel = Deadlines()
    fut = loop.create_future()
    slot = wheel.add(fut, 0.05)
    fut.set_result(12.5)  # a notification came first
    await asyncio.sleep(0.2)
    assert fut.result() == 12.5
    wheel.discard(slot, fut)
    assert len(wheel) == 0
