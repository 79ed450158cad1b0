"""Reading and renaming the requester's own devices (deletion, which needs UIA and revokes tokens,
is in services/accounts.py)."""

from __future__ import annotations

from homeserver.http.requester import Requester
from homeserver.storage.stores.devices import Device, DeviceStore


class DeviceService:
    def __init__(self, store: DeviceStore) -> None:
        self.store = store

    async def list_devices(self, requester: Requester) -> list[Device]:
        return await self.store.list_devices(requester.user_id)

    async def get_device(self, requester: Requester, device_id: str) -> Device | None:
        return await self.store.get_device(requester.user_id, device_id)

    async def set_display_name(self, requester: Requester, device_id: str, display_name: str | None) -> bool:
        """False when the requester has no such device."""
        return await self.store.set_display_name(requester.user_id, device_id, display_name)
