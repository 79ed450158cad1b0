"""Remote users' device lists and inbound to-device idempotence (schema/0026_remote_devices.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core.json import dumps_str, loads
from homeserver.storage.database import Connection, Database


@dataclass(frozen=True, slots=True)
class RemoteDeviceList:
    user_id: str
    stream_id: int | None  # the last update applied; None: never synced successfully
    stale: bool


@dataclass(frozen=True, slots=True)
class RemoteDevice:
    device_id: str
    display_name: str | None
    keys: dict[str, Any] | None


def _in_list(start: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class RemoteDeviceStore:
    CHUNK = 500

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- tracking --------------------------------------------------------------------------------

    async def get_list(self, user_id: str) -> RemoteDeviceList | None:
        row = await self.db.fetchrow(
            "SELECT user_id, stream_id, stale FROM remote_device_lists WHERE user_id = $1", user_id
        )
        return _list(row) if row is not None else None

    async def get_lists(self, user_ids: Sequence[str]) -> dict[str, RemoteDeviceList]:
        out: dict[str, RemoteDeviceList] = {}
        for start in range(0, len(user_ids), self.CHUNK):
            chunk = list(user_ids[start : start + self.CHUNK])
            rows = await self.db.fetch(
                "SELECT user_id, stream_id, stale FROM remote_device_lists"
                f" WHERE user_id IN ({_in_list(1, len(chunk))})",
                *chunk,
            )
            for row in rows:
                out[row[0]] = _list(row)
        return out

    async def mark_stale(self, user_id: str, now: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO remote_device_lists (user_id, stream_id, stale, updated_ts)"
                " VALUES ($1, NULL, TRUE, $2)"
                " ON CONFLICT (user_id) DO UPDATE SET stale = TRUE, updated_ts = excluded.updated_ts",
                user_id,
                now,
            )

    async def set_extremity_txn(self, conn: Connection, user_id: str, stream_id: int, now: int) -> None:
        await conn.execute(
            "INSERT INTO remote_device_lists (user_id, stream_id, stale, updated_ts)"
            " VALUES ($1, $2, FALSE, $3)"
            " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, stale = FALSE,"
            " updated_ts = excluded.updated_ts",
            user_id,
            stream_id,
            now,
        )

    async def forget(self, user_id: str) -> None:
        """Stop tracking the user: their next update or key query starts from a resync."""
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM remote_device_lists WHERE user_id = $1", user_id)
            await conn.execute("DELETE FROM remote_devices WHERE user_id = $1", user_id)

    # -- devices ---------------------------------------------------------------------------------

    async def list_devices(self, user_ids: Sequence[str]) -> dict[str, list[RemoteDevice]]:
        out: dict[str, list[RemoteDevice]] = {}
        for start in range(0, len(user_ids), self.CHUNK):
            chunk = list(user_ids[start : start + self.CHUNK])
            rows = await self.db.fetch(
                "SELECT user_id, device_id, display_name, key_json FROM remote_devices"
                f" WHERE user_id IN ({_in_list(1, len(chunk))}) ORDER BY user_id, device_id",
                *chunk,
            )
            for row in rows:
                keys = loads(row[3]) if row[3] is not None else None
                out.setdefault(row[0], []).append(RemoteDevice(row[1], row[2], keys))
        return out

    async def upsert_device_txn(self, conn: Connection, user_id: str, device: RemoteDevice) -> None:
        await conn.execute(
            "INSERT INTO remote_devices (user_id, device_id, display_name, key_json) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = excluded.display_name,"
            " key_json = excluded.key_json",
            user_id,
            device.device_id,
            device.display_name,
            dumps_str(device.keys) if device.keys is not None else None,
        )

    async def delete_device_txn(self, conn: Connection, user_id: str, device_id: str) -> None:
        await conn.execute(
            "DELETE FROM remote_devices WHERE user_id = $1 AND device_id = $2", user_id, device_id
        )

    async def replace_devices_txn(
        self, conn: Connection, user_id: str, devices: Sequence[RemoteDevice]
    ) -> None:
        """The whole list, as a resync returned it."""
        await conn.execute("DELETE FROM remote_devices WHERE user_id = $1", user_id)
        await conn.executemany(
            "INSERT INTO remote_devices (user_id, device_id, display_name, key_json) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (user_id, device_id) DO NOTHING",
            [
                (user_id, d.device_id, d.display_name, dumps_str(d.keys) if d.keys is not None else None)
                for d in devices
            ],
        )

    # -- inbound to-device idempotence -------------------------------------------------------------

    async def claim_to_device_id_txn(self, conn: Connection, origin: str, message_id: str, now: int) -> bool:
        """Record a message id of `origin`; False when it was seen before (a retransmission)."""
        inserted = await conn.fetchval(
            "INSERT INTO federation_to_device_ids (origin, message_id, ts) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING message_id",
            origin,
            message_id,
            now,
        )
        return inserted is not None

    async def delete_to_device_ids_before(self, ts: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM federation_to_device_ids WHERE ts < $1", ts)


def _list(row: Any) -> RemoteDeviceList:
    return RemoteDeviceList(row[0], int(row[1]) if row[1] is not None else None, bool(row[2]))
