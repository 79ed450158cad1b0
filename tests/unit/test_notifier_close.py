"""Notifier.close(): shutdown answers parked long-polls at once and parks no new ones."""

from __future__ import annotations

import asyncio

from homeserver.core.streams import Stream
from homeserver.core.tokens import StreamToken
from homeserver.notifier.notifier import Notifier


async def test_close_answers_parked_waiters_as_timed_out() -> None:
    notifier = Notifier()
    notifier.track("@a:test")
    waiters = [
        asyncio.ensure_future(notifier.wait_for_change("@a:test", StreamToken(), timeout_s=3600))
        for _ in range(3)
    ]
    await asyncio.sleep(0)  # let them park
    assert notifier.waiting_users == 1
    notifier.close()
    # False: nothing changed for the user; the sync answers with what it has.
    assert await asyncio.gather(*waiters) == [False, False, False]
    assert notifier.waiting_users == 0


async def test_after_close_nothing_parks() -> None:
    notifier = Notifier()
    notifier.close()
    assert (
        await asyncio.wait_for(notifier.wait_for_change("@a:test", StreamToken(), timeout_s=3600), 1) is False
    )


async def test_a_change_still_wakes_before_close() -> None:
    notifier = Notifier()
    notifier.track("@a:test")
    since = notifier.current
    waiter = asyncio.ensure_future(notifier.wait_for_change("@a:test", since, timeout_s=3600))
    await asyncio.sleep(0)
    notifier.on_user_event(Stream.TO_DEVICE, 5, ["@a:test"])
    assert await waiter is True
