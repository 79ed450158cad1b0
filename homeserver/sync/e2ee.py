"""The /sync sections of end-to-end encryption: `to_device`, `device_lists`,
`device_one_time_keys_count` and `device_unused_fallback_key_types`."""

from __future__ import annotations

from typing import Any

from homeserver.core.streams import Stream
from homeserver.core.tokens import StreamToken
from homeserver.services.device_lists import DeviceListService
from homeserver.services.e2e_keys import E2eKeysService
from homeserver.services.to_device import ToDeviceService
from homeserver.sync.service import SyncExtension, SyncRequest


class E2eeSyncExtension(SyncExtension):
    def __init__(
        self, keys: E2eKeysService, to_device: ToDeviceService, device_lists: DeviceListService
    ) -> None:
        self.keys = keys
        self.to_device = to_device
        self.device_lists = device_lists

    async def global_part(
        self, req: SyncRequest, since: StreamToken | None, now: StreamToken, response: dict[str, Any]
    ) -> bool:
        news = False
        # To-device acknowledgement uses the token the client sent, even with full_state=true.
        acked = req.since.to_device if req.since is not None else 0
        if req.device_id is not None:
            delivery = await self.to_device.deliver(req.user_id, req.device_id, acked, now.to_device)
            if delivery.events:
                news = True
                response["to_device"] = {"events": delivery.events}
                if delivery.position != now.to_device:
                    response["next_batch"] = now.with_stream(Stream.TO_DEVICE, delivery.position).serialize()
        if since is not None and (now.device_lists > since.device_lists or now.events > since.events):
            changed, left = await self.device_lists.changes_between(req.user_id, since, now)
            if changed or left:
                news = True
                response["device_lists"] = {"changed": sorted(changed), "left": sorted(left)}
        return news

    async def finish(self, req: SyncRequest, response: dict[str, Any]) -> None:
        """Fields every response carries, also an empty one after a timeout: clients read a missing
        `device_one_time_keys_count` as "no keys left" and upload more."""
        if req.device_id is None:
            return
        if req.since is not None:
            # Runs for every response, also when nothing moved and the sync returned early.
            await self.to_device.acknowledge(req.user_id, req.device_id, req.since.to_device)
        counts, fallback = await self.keys.key_counts(req.user_id, req.device_id)
        response["device_one_time_keys_count"] = counts
        response["device_unused_fallback_key_types"] = fallback
