"""Stored events -> client format, with the per-client `unsigned` data.

unsigned carries `age`, `transaction_id` (only for the sending device), `redacted_because` for
redacted events (whose content is served pruned), and `prev_content`/`replaces_state` for state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.streams import EventsRow, StreamRow
from homeserver.events.client_format import client_event
from homeserver.events.redaction import prune_event_dict
from homeserver.storage.stores.events import EventStore, StoredEvent


class EventSerializer:
    TXN_CACHE = 100_000

    def __init__(self, events: EventStore, clock: Clock) -> None:
        self.events = events
        self.clock = clock
        # event_id -> (device_id, txn_id) of recent client sends
        self._txns: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Events stream consumer: remember the transaction ids of client sends (sync echoes them)."""
        for row in rows:
            if isinstance(row, EventsRow) and row.txn_id is not None and row.device_id is not None:
                self._txns[row.event_id] = (row.device_id, row.txn_id)
                if len(self._txns) > self.TXN_CACHE:
                    self._txns.popitem(last=False)

    async def _txn_ids(
        self, user_id: str, device_id: str | None, events: Sequence[StoredEvent]
    ) -> dict[str, str]:
        if device_id is None:
            return {}
        own = [s.event_id for s in events if s.event.sender == user_id]
        if not own:
            return {}
        found: dict[str, str] = {}
        missing = []
        for event_id in own:
            cached = self._txns.get(event_id)
            if cached is not None:
                if cached[0] == device_id:
                    found[event_id] = cached[1]
            else:
                missing.append(event_id)
        if missing:
            found.update(await self.events.list_txn_ids(user_id, device_id, missing))
        return found

    async def serialize(
        self,
        events: Sequence[StoredEvent],
        *,
        user_id: str | None = None,
        device_id: str | None = None,
        include_room_id: bool = True,
        stripped_state: bool = False,
    ) -> list[dict[str, Any]]:
        """`stripped_state`: every invite carries its `invite_room_state` (appservice pushes, as
        Synapse), not only for the invited user."""
        if not events:
            return []
        now = self.clock.time_ms()
        txn_ids = await self._txn_ids(user_id, device_id, events) if user_id else {}
        redaction_ids = [s.redacted_by for s in events if s.redacted_by]
        redactions = await self.events.get_events(redaction_ids) if redaction_ids else {}
        replaced_ids = [s.replaces_state for s in events if s.replaces_state]
        replaced = await self.events.get_events(replaced_ids) if replaced_ids else {}
        out = []
        for stored in events:
            event = stored.event
            pdu = event.pdu
            unsigned: dict[str, Any] = {"age": max(0, now - event.origin_server_ts)}
            txn_id = txn_ids.get(stored.event_id)
            if txn_id is not None:
                unsigned["transaction_id"] = txn_id
            if stored.redacted_by:
                pdu = prune_event_dict(event.room_version, pdu)
                redaction = redactions.get(stored.redacted_by)
                if redaction is not None:
                    unsigned["redacted_because"] = client_event(
                        redaction.event.pdu,
                        redaction.event_id,
                        include_room_id=include_room_id,
                        unsigned={"age": max(0, now - redaction.event.origin_server_ts)},
                    )
            if stored.replaces_state:
                unsigned["replaces_state"] = stored.replaces_state
                previous = replaced.get(stored.replaces_state)
                if previous is not None:
                    prev_pdu = previous.event.pdu
                    if previous.redacted_by:
                        prev_pdu = prune_event_dict(previous.event.room_version, prev_pdu)
                    unsigned["prev_content"] = prev_pdu.get("content", {})
                    unsigned["prev_sender"] = previous.event.sender
            invite_state = event.unsigned.get("invite_room_state")
            if invite_state is not None and (stripped_state or user_id == event.state_key):
                unsigned["invite_room_state"] = invite_state
            out.append(client_event(pdu, stored.event_id, include_room_id=include_room_id, unsigned=unsigned))
        return out

    async def serialize_one(self, stored: StoredEvent, **kwargs: Any) -> dict[str, Any]:
        return (await self.serialize([stored], **kwargs))[0]
