"""`EventContext`: an event ready for the persister, whatever its origin.

Every event reaches the persister as a context: built locally (`persist/local.py`: builder + auth
rules, no I/O) or received over federation (after signature, hash and auth checks against the
state before it and soft-fail against the current state). The persister needs nothing else to
store it: the event, how it arrived, the state before it, and whether it was rejected or
soft-failed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum

from homeserver.events.event import Event

StateKey = tuple[str, str]


class EventKind(Enum):
    # Created here by a local user: extends the room's forward extremities.
    LOCAL_NEW = "local_new"
    # A new event received over federation: may fork the room (its prev_events need not be
    # our extremities).
    REMOTE_NEW = "remote_new"
    # Known only by id and signature (an auth event, an invite's room): no place in the DAG, no
    # state, never a forward extremity, never sent to clients.
    OUTLIER = "outlier"
    # History fetched with /backfill: older than what we have, so it changes neither the forward
    # extremities nor the current state.
    BACKFILLED = "backfilled"


@dataclass(frozen=True, slots=True)
class EventContext:
    event: Event
    kind: EventKind
    # The room state before the event, as event ids. Empty for outliers (unknown).
    state_before: Mapping[StateKey, str]
    # The state group of `state_before` when the caller knows it (local events: the room's
    # current group), so the persister writes no new group for it. None: the persister stores
    # `state_before` as a new group (or, for a room's create event, it is the empty state).
    state_group_before: int | None = None
    # Why the event failed the auth rules (stored, never part of the state or the timeline).
    rejected_reason: str | None = None
    # Passed auth against the state before it, but not against the current state.
    soft_failed: bool = False
    # (user_id, device_id, txn_id) of an idempotent client send.
    txn: tuple[str, str, str] | None = None
    # The event is stored already as an outlier and now takes its place in the DAG (federation:
    # an auth or state event that later arrives live or through backfill).
    replaces_outlier: bool = False
    # An outlier member event of a local user in a room this server is not in (an invite received
    # over federation, a knock or the rejection of an invite made through another server): it sets
    # the user's membership (room_memberships, /sync) without touching the room's state.
    out_of_band_membership: bool = False

    @property
    def is_outlier(self) -> bool:
        return self.kind is EventKind.OUTLIER

    @property
    def changes_room(self) -> bool:
        """True when the event may move the forward extremities and the current state."""
        return (
            self.kind in (EventKind.LOCAL_NEW, EventKind.REMOTE_NEW)
            and self.rejected_reason is None
            and not self.soft_failed
        )

    @property
    def state_after_own_key(self) -> bool:
        """True when the state after the event includes the event itself."""
        return self.event.state_key is not None and self.rejected_reason is None and not self.is_outlier


class StateIds(Mapping[StateKey, str]):
    """A read-only id view of a `{key: Event}` state mapping, built in O(1) (the local send path
    must not copy a large room's state per event)."""

    __slots__ = ("_state",)

    def __init__(self, state: Mapping[StateKey, Event]) -> None:
        self._state = state

    def __getitem__(self, key: StateKey) -> str:
        return self._state[key].event_id

    def __iter__(self) -> Iterator[StateKey]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, key: object) -> bool:
        return key in self._state
