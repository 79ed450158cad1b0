"""Notifier.wait_for_change: a parked wait ends on a notification (True), at its timeout (False) or
when cancelled, and leaves no waiter and no timer behind in any case."""

from __future__ import annotations

import asyncio

from homeserver.core.streams import Stream
from homeserver.notifier.notifier import Notifier


async def test_timeout_notification_and_cancel_leave_nothing_parked() -> None:
    notifier = Notifier()
    notifier.track("@a:test")
    since = notifier.current
    assert await notifier.wait_for_change("@a:test", since, timeout_s=0.05) is False
    assert notifier.listeners == 0

    woken = asyncio.ensure_future(notifier.wait_for_change("@a:test", since, timeout_s=3600))
    await asyncio.sleep(0)
    assert notifier.listeners == 1
    notifier.on_user_event(Stream.TO_DEVICE, 1, ["@a:test"])
    assert await woken is True
    assert notifier.listeners == 0
    # already past `since`: no wait at all
    assert await notifier.wait_for_change("@a:test", since, timeout_s=3600) is True

    later = notifier.current
    parked = asyncio.ensure_future(notifier.wait_for_change("@a:test", later, timeout_s=0.05))
    await asyncio.sleep(0)
    parked.cancel()
    await asyncio.gather(parked, return_exceptions=True)
    assert notifier.listeners == 0
    await asyncio.sleep(0.1)  # the cancelled wait's timer must not fire into anything
    assert notifier.listeners == 0
    assert await notifier.wait_for_change("@a:test", later, timeout_s=0) is False
    assert len(notifier._deadlines) == 0  # no timeout left behind by any of the waits
