"""Synapse's federation destinations admin API: what each remote server's queue and backoff look
like, the rooms it is sent events of, and resetting a destination's backoff to retry at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.federation.backoff import DestinationBackoff
from homeserver.federation.sender.sender import FederationSender
from homeserver.storage.stores.federation_queue import DestinationAdminStore, DestinationInfo

ORDER_BY = ("destination", "retry_last_ts", "retry_interval", "failure_ts", "last_successful_stream_ordering")


def _format(info: DestinationInfo) -> dict[str, Any]:
    return {
        "destination": info.destination,
        "retry_last_ts": info.retry_last_ts,
        "retry_interval": info.retry_interval,
        "failure_ts": info.failure_ts,
        "last_successful_stream_ordering": info.last_successful_stream_ordering,
    }


def _page(body: dict[str, Any], offset: int, count: int, total: int) -> dict[str, Any]:
    body["total"] = total
    if offset + count < total:
        body["next_token"] = str(offset + count)
    return body


class DestinationAdmin:
    def __init__(
        self, store: DestinationAdminStore, backoff: DestinationBackoff, sender: FederationSender | None
    ) -> None:
        self.store = store
        self.backoff = backoff
        self.sender = sender
        # when another process sends (federation_sender_instances): tell it (scaleout/setup.py)
        self.reset_hooks: list[Callable[[str], Awaitable[None]]] = []

    async def list_destinations(
        self, offset: int, limit: int, order_by: str, backwards: bool, search: str | None
    ) -> dict[str, Any]:
        rows, total = await self.store.list_destinations(offset, limit, order_by, backwards, search)
        return _page({"destinations": [_format(r) for r in rows]}, offset, len(rows), total)

    async def _known(self, destination: str) -> DestinationInfo:
        info = await self.store.get_destination(destination)
        if info is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown destination")
        return info

    async def get_destination(self, destination: str) -> dict[str, Any]:
        return _format(await self._known(destination))

    async def list_rooms(self, destination: str, offset: int, limit: int, backwards: bool) -> dict[str, Any]:
        await self._known(destination)
        rows, total = await self.store.list_destination_rooms(destination, offset, limit, backwards)
        rooms = [{"room_id": room_id, "stream_ordering": ordering} for room_id, ordering in rows]
        return _page({"rooms": rooms}, offset, len(rows), total)

    async def reset_connection(self, destination: str) -> None:
        info = await self._known(destination)
        paused = self.sender is not None and self.sender.is_paused(destination)
        if not info.retry_last_ts and not paused:
            raise MatrixError(
                400, "M_UNKNOWN", "The retry timing does not need to be reset for this destination."
            )
        if self.sender is not None:
            await self.sender.reset_destination(destination)
        else:
            await self.backoff.reset(destination)
            for hook in self.reset_hooks:
                await hook(destination)
