"""What the persister plans for a batch: the rows it writes, the events it hands on, and the
lookup of events a batch needs before they are committed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from homeserver.events.context import EventContext
from homeserver.events.event import Event
from homeserver.state.current import RoomSnapshot
from homeserver.storage.stores.events import EventStore, NewEventRow
from homeserver.storage.stores.rooms import Membership
from homeserver.storage.stores.state import EventStateRow, NewStateGroup


@dataclass(frozen=True, slots=True)
class PersistedEvent:
    event: Event
    stream_ordering: int
    # The room state before this event (for push rules, notifications, visibility decisions).
    state_before: RoomSnapshot
    # (user_id, device_id, txn_id) of an idempotent client send.
    txn: tuple[str, str, str] | None = None
    context: EventContext | None = None

    @property
    def is_live(self) -> bool:
        """A new timeline event (not an outlier, backfilled, rejected or soft-failed one)."""
        return self.context is None or self.context.changes_room


@dataclass(slots=True)
class BatchPlan:
    """Rows one batch writes (besides the per-room extremities and current groups)."""

    events: list[NewEventRow] = field(default_factory=list)
    txn_ids: list[tuple[str, str, str, str, str, str, int]] = field(default_factory=list)
    current_state: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    removed_state: list[tuple[str, str, str]] = field(default_factory=list)
    deltas: list[tuple[int, str, str, str, str | None, str | None]] = field(default_factory=list)
    members: list[Membership] = field(default_factory=list)
    redactions: list[tuple[str, str]] = field(default_factory=list)
    groups: list[NewStateGroup] = field(default_factory=list)
    event_state: list[EventStateRow] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    auth_edges: list[tuple[str, str, str]] = field(default_factory=list)

    def extend(self, other: BatchPlan) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


class EventLookup:
    """Events by id for the writer: this batch's uncommitted events first, then the store."""

    __slots__ = ("events", "layers")

    def __init__(self, events: EventStore, *layers: Mapping[str, Event]) -> None:
        self.events = events
        self.layers = layers

    async def get(self, event_ids: Sequence[str]) -> dict[str, Event]:
        found: dict[str, Event] = {}
        missing = []
        for event_id in event_ids:
            for layer in self.layers:
                event = layer.get(event_id)
                if event is not None:
                    found[event_id] = event
                    break
            else:
                missing.append(event_id)
        if missing:
            for event_id, stored in (await self.events.get_events(missing)).items():
                found[event_id] = stored.event
        return found


def membership_row(event: Event, ordering: int) -> Membership:
    content = event.content
    displayname = content.get("displayname")
    avatar = content.get("avatar_url")
    return Membership(
        event.room_id,
        event.state_key or "",
        str(content.get("membership")),
        event.event_id,
        ordering,
        event.sender,
        displayname if isinstance(displayname, str) else None,
        avatar if isinstance(avatar, str) else None,
    )
