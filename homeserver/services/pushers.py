"""Pushers: where a user's notifications go (push gateways, email). Delivery is the pusher worker's."""

from __future__ import annotations

from typing import Any

from homeserver.core.clock import Clock
from homeserver.storage.stores.pushers import Pusher, PusherStore


class PusherService:
    def __init__(self, store: PusherStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def list_for_user(self, user_id: str) -> list[Pusher]:
        return await self.store.list_for_user(user_id)

    async def set_pusher(self, *, append: bool, **fields: Any) -> None:
        await self.store.upsert(Pusher(**fields), self.clock.time_ms(), append=append)

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> None:
        await self.store.delete(user_id, app_id, pushkey)

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        await self.store.delete_for_devices(user_id, device_ids)
