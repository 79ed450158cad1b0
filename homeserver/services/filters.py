"""Uploaded filters (filter.yaml) and the `filter` query parameter of /sync and /messages, which is
either inline JSON or the id of a filter the requester uploaded."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events.filter import (
    DEFAULT_FILTER,
    Filter,
    RoomEventFilter,
    parse_filter,
    parse_filter_param,
    parse_room_event_filter,
)
from homeserver.http.requester import Requester
from homeserver.storage.stores.misc import FilterStore

# Parsed inline /sync filters by their JSON text: a long-polling client sends the same one with
# every request, and parsing it was a visible share of a woken sync. Filters are immutable.
INLINE_CACHE_SIZE = 512


class FilterService:
    def __init__(self, store: FilterStore) -> None:
        self.store = store
        self._inline: OrderedDict[str, Filter] = OrderedDict()

    def check_owner(self, requester: Requester, user_id: str) -> None:
        if user_id != requester.user_id:
            raise forbidden("Cannot access another user's filters")

    async def define(self, requester: Requester, user_id: str, body: dict[str, Any]) -> str:
        self.check_owner(requester, user_id)
        parse_filter(body)  # validate
        return str(await self.store.insert_filter(user_id, body))

    async def get(self, requester: Requester, user_id: str, filter_id: str) -> dict[str, Any]:
        self.check_owner(requester, user_id)
        number = _filter_number(filter_id)
        if number is None:
            raise not_found("No such filter")
        stored = await self.store.get_filter(user_id, number)
        if stored is None:
            raise not_found("No such filter")
        return stored

    async def _stored(self, requester: Requester, value: str, invalid_id: str) -> dict[str, Any]:
        filter_id = _filter_number(value)
        if filter_id is None:
            raise MatrixError(400, "M_INVALID_PARAM", invalid_id)
        stored = await self.store.get_filter(requester.user_id, filter_id)
        if stored is None:
            raise MatrixError(400, "M_INVALID_PARAM", "Unknown filter id")
        return stored

    async def sync_filter(self, requester: Requester, value: str | None) -> Filter:
        """/sync's `filter`: inline JSON, an uploaded filter's id, or none."""
        if not value:
            return DEFAULT_FILTER
        cached = self._inline.get(value)
        if cached is not None:
            self._inline.move_to_end(value)
            return cached
        inline = parse_filter_param(value)
        if inline is not None:
            parsed = parse_filter(inline, errcode="M_INVALID_PARAM")  # raises: nothing cached
            self._inline[value] = parsed
            if len(self._inline) > INLINE_CACHE_SIZE:
                self._inline.popitem(last=False)
            return parsed
        return parse_filter(await self._stored(requester, value, "Invalid filter id"))

    async def room_event_filter(self, requester: Requester, value: str | None) -> RoomEventFilter:
        """/messages' `filter`: an inline RoomEventFilter, or an uploaded filter's room timeline part."""
        if not value:
            return parse_room_event_filter(None)
        inline = parse_filter_param(value)
        if inline is not None:
            return parse_room_event_filter(inline, errcode="M_INVALID_PARAM")
        stored = await self._stored(requester, value, "filter must be a JSON RoomEventFilter")
        return parse_filter(stored).room.timeline


def _filter_number(value: str) -> int | None:
    """A filter id as stored (plain digits, a small BIGINT), or None for anything else."""
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)
