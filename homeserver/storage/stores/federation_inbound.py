"""Answered inbound federation transactions (`federation_inbound_txns`)."""

from __future__ import annotations

from homeserver.core import json as hjson
from homeserver.storage.database import Database


class InboundFederationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- transactions ----------------------------------------------------------------------------

    async def get_txn_response(self, origin: str, txn_id: str) -> dict[str, object] | None:
        value = await self.db.fetchval(
            "SELECT response_json FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2",
            origin,
            txn_id,
        )
        if value is None:
            return None
        loaded = hjson.loads(value)
        return loaded if isinstance(loaded, dict) else None

    async def store_txn_response(
        self, origin: str, txn_id: str, response: dict[str, object], ts: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO federation_inbound_txns (origin, txn_id, response_json, received_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (origin, txn_id) DO NOTHING",
            origin,
            txn_id,
            hjson.dumps_str(response),
            ts,
        )

    async def prune_txns_before(self, ts: int) -> None:
        await self.db.execute("DELETE FROM federation_inbound_txns WHERE received_ts < $1", ts)

    # -- the DAG ---------------------------------------------------------------------------------

    async def backward_extremities(self, room_id: str, limit: int) -> list[str]:
        """Events of the room referenced as prev_events that we do not have (or have only as
        outliers): where backfill continues. Deepest referencing events first."""
        rows = await self.db.fetch(
            "SELECT e.prev_event_id, MAX(ev2.depth) AS d FROM event_edges e"
            " LEFT JOIN events ev ON ev.event_id = e.prev_event_id"
            " JOIN events ev2 ON ev2.event_id = e.event_id"
            " WHERE e.room_id = $1 AND (ev.event_id IS NULL OR ev.outlier)"
            " GROUP BY e.prev_event_id ORDER BY d DESC, e.prev_event_id LIMIT $2",
            room_id,
            limit,
        )
        return [r[0] for r in rows]

    async def has_children(self, event_id: str) -> bool:
        """Whether a stored event lists `event_id` among its prev_events."""
        value = await self.db.fetchval("SELECT 1 FROM event_edges WHERE prev_event_id = $1 LIMIT 1", event_id)
        return value is not None
