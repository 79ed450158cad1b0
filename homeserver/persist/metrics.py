"""Event-persistence families (Synapse's `synapse_storage_events_*` names), fed by the events stream
after each commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from homeserver.core.streams import EventsRow, StreamRow
from homeserver.metrics import CallbackGauge, counter, gauge, histogram

if TYPE_CHECKING:
    from homeserver.state.current import CurrentStateCache

persisted_events = counter("synapse_storage_events_persisted_events", "Events persisted")
persisted_events_sep = counter(
    "synapse_storage_events_persisted_events_sep",
    "Events persisted, by type (common types only, else *other*) and origin",
    ["type", "origin_type"],
)
persisted_position = gauge("synapse_event_persisted_position", "Highest persisted events stream position")
forward_extremities = histogram(
    "synapse_storage_events_forward_extremities_persisted",
    "Forward extremities of the room after each new event",
    buckets=(1, 2, 3, 5, 7, 10, 15, 20, 50, 100, 200, 500),
)
batch_size = histogram(
    "homeserver_persist_batch_size",
    "Events written per persister commit (group commit: many rooms' events share one transaction)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
persist_latency = histogram(
    "homeserver_persist_event_seconds",
    "Seconds from handing events to the persister until they are committed and published",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
queue_length = CallbackGauge(
    "homeserver_persist_queue_length", "Events handed to the persister and not yet committed"
)

# As in Synapse: few labels, so a spike of one kind shows without a series per event type.
TRACKED_TYPES = frozenset(
    {
        "m.room.message",
        "m.room.encrypted",
        "m.room.member",
        "m.room.third_party_invite",
        "m.room.redaction",
        "m.room.create",
        "m.room.tombstone",
    }
)


class PersistMetrics:
    """An events-stream consumer (replication/bus.py): counts what each commit persisted.

    It runs after the persister published the new current state, so the forward extremities it
    samples are those after the event's commit."""

    def __init__(self, state: CurrentStateCache, server_name: str) -> None:
        self.state = state
        self.suffix = ":" + server_name

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        events = [row for row in rows if isinstance(row, EventsRow)]
        if not events:
            return
        persisted_events.inc(len(events))
        batch_size.observe(len(events))
        for row in events:
            kind = row.type if row.type in TRACKED_TYPES else "*other*"
            origin = "local" if row.sender.endswith(self.suffix) else "remote"
            persisted_events_sep.labels(kind, origin).inc()
            snapshot = self.state.cached(row.room_id)
            if snapshot is not None:
                forward_extremities.observe(len(snapshot.extremities))
        # Backfilled events have negative orderings: the position is the stream's, not theirs.
        persisted_position.set(position)
