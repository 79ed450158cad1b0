"""A worker tells main of a user's syncing on the first start and after the last stop only."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.config.workers import WorkerConfig
from homeserver.scaleout import main_client
from homeserver.scaleout.main_client import MainClient


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> tuple[MainClient, list[tuple[str, bool]]]:
    monkeypatch.setattr(main_client, "SYNC_STOP_GRACE_SECONDS", 0.05)
    mc = MainClient(WorkerConfig(role="client_reader", replication_secret="s", main_url="http://main"))
    sent: list[tuple[str, bool]] = []
    monkeypatch.setattr(mc, "_send_presence", lambda key, syncing: sent.append((key[0], syncing)))
    return mc, sent


async def test_back_to_back_syncs_cost_main_nothing(
    client: tuple[MainClient, list[tuple[str, bool]]],
) -> None:
    mc, sent = client
    for _ in range(5):
        mc.presence_syncing("@a:hs", "D", None, True)
        mc.presence_syncing("@a:hs", "D", None, False)
    assert sent == [("@a:hs", True)]
    await asyncio.sleep(0.1)  # no sync for the grace: main hears the end
    assert sent == [("@a:hs", True), ("@a:hs", False)]
    mc.presence_syncing("@a:hs", "D", None, True)
    assert sent[-1] == ("@a:hs", True)
    await mc.close()


async def test_concurrent_syncs_end_with_the_last(client: tuple[MainClient, list[tuple[str, bool]]]) -> None:
    mc, sent = client
    mc.presence_syncing("@a:hs", "D", None, True)
    mc.presence_syncing("@a:hs", "D", None, True)
    mc.presence_syncing("@a:hs", "D", None, False)
    await asyncio.sleep(0.1)
    assert sent == [("@a:hs", True)]  # one is still running
    mc.presence_syncing("@a:hs", "D", None, False)
    await asyncio.sleep(0.1)
    assert sent == [("@a:hs", True), ("@a:hs", False)]
    await mc.close()
