"""End-to-end encryption tables: device keys, one-time and fallback keys, cross-signing keys and
signatures, the device-list stream and send-to-device inboxes (schema/0007_e2ee.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core.json import dumps_str, loads
from homeserver.core.streams import DeviceListsRow, Stream
from homeserver.storage.database import Connection, Database

CROSS_SIGNING_TYPES = ("master", "self_signing", "user_signing")


@dataclass(frozen=True, slots=True)
class CrossSigningKey:
    user_id: str
    key_type: str
    public_key: str
    key: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Signature:
    signer: str  # user id
    key_id: str  # ed25519:<device id or public key>
    target_user_id: str
    target_device_id: str
    signature: str


@dataclass(frozen=True, slots=True)
class DeviceListChange:
    stream_id: int
    user_id: str
    visible_to: str | None


@dataclass(frozen=True, slots=True)
class ToDeviceMessage:
    stream_id: int
    sender: str
    type: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OneTimeKey:
    algorithm: str
    key_id: str
    key: Any  # str or object, as uploaded


def _in_list(start: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class E2eStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- device keys -----------------------------------------------------------------------------

    async def get_device_keys(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        text = await self.db.fetchval(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2", user_id, device_id
        )
        return loads(text) if text is not None else None

    async def get_device_keys_txn(
        self, conn: Connection, user_id: str, device_id: str
    ) -> dict[str, Any] | None:
        text = await conn.fetchval(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2", user_id, device_id
        )
        return loads(text) if text is not None else None

    async def list_device_keys(self, user_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """user -> device -> keys, for the devices that still exist (not hidden)."""
        if not user_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
            " JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id"
            f" WHERE k.user_id IN ({_in_list(1, len(user_ids))}) AND NOT d.hidden",
            *user_ids,
        )
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for r in rows:
            keys = loads(r[2])
            keys["unsigned"] = {"device_display_name": r[3]} if r[3] is not None else {}
            out.setdefault(r[0], {})[r[1]] = keys
        return out

    async def upsert_device_keys_txn(
        self, conn: Connection, user_id: str, device_id: str, keys: dict[str, Any], now: int
    ) -> None:
        await conn.execute(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts_added_ms) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json,"
            " ts_added_ms = excluded.ts_added_ms",
            user_id,
            device_id,
            dumps_str(keys),
            now,
        )

    async def delete_devices_txn(self, conn: Connection, user_id: str, device_ids: Sequence[str]) -> None:
        """Everything E2EE held for these devices: keys, signatures of them, pending messages."""
        for device_id in device_ids:
            for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "device_inbox"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE user_id = $1 AND device_id = $2", user_id, device_id
                )
            await conn.execute(
                "DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = $1"
                " AND target_device_id = $2",
                user_id,
                device_id,
            )
            await conn.execute(
                "DELETE FROM to_device_txns WHERE user_id = $1 AND device_id = $2", user_id, device_id
            )

    # -- one-time and fallback keys --------------------------------------------------------------

    async def get_one_time_keys_txn(
        self, conn: Connection, user_id: str, device_id: str, key_ids: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Any]:
        if not key_ids:
            return {}
        ids = sorted({k for _, k in key_ids})
        rows = await conn.fetch(
            "SELECT algorithm, key_id, key_json FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2"
            f" AND key_id IN ({_in_list(3, len(ids))})",
            user_id,
            device_id,
            *ids,
        )
        return {(r[0], r[1]): loads(r[2]) for r in rows}

    async def insert_one_time_keys_txn(
        self, conn: Connection, user_id: str, device_id: str, keys: Sequence[OneTimeKey], now: int
    ) -> None:
        await conn.executemany(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, ts_added_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            [(user_id, device_id, k.algorithm, k.key_id, dumps_str(k.key), now) for k in keys],
        )

    async def count_one_time_keys_txn(self, conn: Connection, user_id: str, device_id: str) -> dict[str, int]:
        rows = await conn.fetch(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2"
            " GROUP BY algorithm",
            user_id,
            device_id,
        )
        return {r[0]: int(r[1]) for r in rows}

    async def key_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """(one-time key count per algorithm, algorithms with an unused fallback key), one query."""
        rows = await self.db.fetch(
            "SELECT 'o', algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2"
            " GROUP BY algorithm"
            " UNION ALL SELECT 'f', algorithm, 0 FROM e2e_fallback_keys"
            " WHERE user_id = $1 AND device_id = $2 AND NOT used",
            user_id,
            device_id,
        )
        counts = {r[1]: int(r[2]) for r in rows if r[0] == "o"}
        fallback = sorted(r[1] for r in rows if r[0] == "f")
        return counts, fallback

    async def get_fallback_keys_txn(
        self, conn: Connection, user_id: str, device_id: str
    ) -> dict[str, tuple[str, Any]]:
        rows = await conn.fetch(
            "SELECT algorithm, key_id, key_json FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2",
            user_id,
            device_id,
        )
        return {r[0]: (r[1], loads(r[2])) for r in rows}

    async def set_fallback_key_txn(
        self, conn: Connection, user_id: str, device_id: str, key: OneTimeKey, used: bool
    ) -> None:
        await conn.execute(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET"
            " key_id = excluded.key_id, key_json = excluded.key_json, used = excluded.used",
            user_id,
            device_id,
            key.algorithm,
            key.key_id,
            dumps_str(key.key),
            used,
        )

    async def claim_key(self, user_id: str, device_id: str, algorithm: str) -> OneTimeKey | None:
        """Take the oldest one-time key (deleting it), else the fallback key (marking it used).

        The DELETE ... RETURNING makes a key go to exactly one claimer: SQLite serialises writers,
        and on PostgreSQL `FOR UPDATE SKIP LOCKED` makes a concurrent claimer take the next key
        instead of re-reading a row another transaction is deleting.
        """
        lock = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgres" else ""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3"
                " AND key_id = (SELECT key_id FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2"
                f" AND algorithm = $3 ORDER BY ts_added_ms, key_id LIMIT 1{lock})"
                " RETURNING key_id, key_json",
                user_id,
                device_id,
                algorithm,
            )
            if row is not None:
                return OneTimeKey(algorithm, row[0], loads(row[1]))
            row = await conn.fetchrow(
                "UPDATE e2e_fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2"
                " AND algorithm = $3 RETURNING key_id, key_json",
                user_id,
                device_id,
                algorithm,
            )
            if row is not None:
                return OneTimeKey(algorithm, row[0], loads(row[1]))
        return None

    # -- cross-signing keys and signatures ------------------------------------------------------

    async def get_cross_signing_keys(
        self, user_ids: Sequence[str], types: Sequence[str] = CROSS_SIGNING_TYPES
    ) -> dict[tuple[str, str], CrossSigningKey]:
        if not user_ids or not types:
            return {}
        n = len(user_ids)
        rows = await self.db.fetch(
            "SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys"
            f" WHERE user_id IN ({_in_list(1, n)}) AND key_type IN ({_in_list(n + 1, len(types))})",
            *user_ids,
            *types,
        )
        return {(r[0], r[1]): CrossSigningKey(r[0], r[1], r[2], loads(r[3])) for r in rows}

    async def upsert_cross_signing_key_txn(self, conn: Connection, key: CrossSigningKey, now: int) -> None:
        await conn.execute(
            "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json, ts_added_ms)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, key_type) DO UPDATE SET"
            " public_key = excluded.public_key, key_json = excluded.key_json,"
            " ts_added_ms = excluded.ts_added_ms",
            key.user_id,
            key.key_type,
            key.public_key,
            dumps_str(key.key),
            now,
        )

    async def list_signatures(self, target_user_ids: Sequence[str]) -> list[Signature]:
        if not target_user_ids:
            return []
        rows = await self.db.fetch(
            "SELECT user_id, key_id, target_user_id, target_device_id, signature"
            " FROM e2e_cross_signing_signatures"
            f" WHERE target_user_id IN ({_in_list(1, len(target_user_ids))})",
            *target_user_ids,
        )
        return [Signature(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def upsert_signatures_txn(self, conn: Connection, signatures: Sequence[Signature]) -> None:
        await conn.executemany(
            "INSERT INTO e2e_cross_signing_signatures"
            " (user_id, key_id, target_user_id, target_device_id, signature) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (target_user_id, target_device_id, user_id, key_id)"
            " DO UPDATE SET signature = excluded.signature",
            [(s.signer, s.key_id, s.target_user_id, s.target_device_id, s.signature) for s in signatures],
        )

    # -- device-list stream ----------------------------------------------------------------------

    async def insert_device_list_changes_txn(
        self, conn: Connection, stream_id: int, changes: Sequence[tuple[str, str | None]], now: int
    ) -> None:
        await conn.executemany(
            "INSERT INTO device_lists_stream (stream_id, user_id, visible_to, ts) VALUES ($1, $2, $3, $4)",
            [(stream_id, user_id, visible_to, now) for user_id, visible_to in changes],
        )

    async def device_list_rows_since(self, after: int, upto: int, limit: int) -> list[DeviceListsRow]:
        """Stream rows of the device-list changes (stream-bus catch-up)."""
        rows = await self.db.fetch(
            "SELECT DISTINCT stream_id, user_id, visible_to FROM device_lists_stream"
            " WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id LIMIT $3",
            after,
            upto,
            limit,
        )
        return [DeviceListsRow(int(r[0]), r[1], r[2]) for r in rows]

    async def latest_device_list_stream_id(self, user_id: str) -> int:
        """The stream id of the user's latest device-list change seen by everyone (0: none): the
        `stream_id` of GET /_matrix/federation/v1/user/devices/{userId}."""
        value = await self.db.fetchval(
            "SELECT MAX(stream_id) FROM device_lists_stream WHERE user_id = $1 AND visible_to IS NULL",
            user_id,
        )
        return int(value or 0)

    async def device_list_changes_between(self, after: int, upto: int) -> list[DeviceListChange]:
        rows = await self.db.fetch(
            "SELECT DISTINCT stream_id, user_id, visible_to FROM device_lists_stream"
            " WHERE stream_id > $1 AND stream_id <= $2",
            after,
            upto,
        )
        return [DeviceListChange(int(r[0]), r[1], r[2]) for r in rows]

    # -- send-to-device --------------------------------------------------------------------------

    async def claim_to_device_txn(
        self, conn: Connection, user_id: str, device_id: str, txn_id: str, now: int
    ) -> bool:
        """Record a transaction id; False when it was already used (a retry)."""
        inserted = await conn.fetchval(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, ts) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING RETURNING txn_id",
            user_id,
            device_id,
            txn_id,
            now,
        )
        return inserted is not None

    async def insert_to_device_txn(
        self, conn: Connection, rows: Sequence[tuple[str, str, int, str, str, dict[str, Any]]]
    ) -> None:
        """rows: (user_id, device_id, stream_id, sender, type, content)."""
        await conn.executemany(
            "INSERT INTO device_inbox (user_id, device_id, stream_id, sender, type, content)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(u, d, s, sender, t, dumps_str(c)) for u, d, s, sender, t, c in rows],
        )

    async def list_to_device(
        self, user_id: str, device_id: str, after: int, upto: int, limit: int
    ) -> list[ToDeviceMessage]:
        rows = await self.db.fetch(
            "SELECT stream_id, sender, type, content FROM device_inbox WHERE user_id = $1"
            " AND device_id = $2 AND stream_id > $3 AND stream_id <= $4 ORDER BY stream_id LIMIT $5",
            user_id,
            device_id,
            after,
            upto,
            limit,
        )
        return [ToDeviceMessage(int(r[0]), r[1], r[2], loads(r[3])) for r in rows]

    async def has_to_device_upto(self, user_id: str, device_id: str, upto: int) -> bool:
        row = await self.db.fetchrow(
            "SELECT 1 FROM device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3 LIMIT 1",
            user_id,
            device_id,
            upto,
        )
        return row is not None

    async def delete_to_device_upto(self, user_id: str, device_id: str, upto: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3",
                user_id,
                device_id,
                upto,
            )

    async def delete_to_device_txns_before(self, ts: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM to_device_txns WHERE ts < $1", ts)

    # -- stream watermarks -------------------------------------------------------------------------

    @staticmethod
    async def load_to_device_position(db: Database) -> int:
        """Max of the persisted watermark and the inbox (rows are deleted once delivered)."""
        inbox = await db.fetchval("SELECT COALESCE(MAX(stream_id), 0) FROM device_inbox")
        mark = await db.fetchval(
            "SELECT position FROM stream_watermarks WHERE stream_name = $1", Stream.TO_DEVICE.value
        )
        return max(int(inbox or 0), int(mark or 0))

    @staticmethod
    async def load_device_lists_position(db: Database) -> int:
        return int(await db.fetchval("SELECT COALESCE(MAX(stream_id), 0) FROM device_lists_stream") or 0)

    async def set_watermark(self, stream: Stream, position: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO stream_watermarks (stream_name, position) VALUES ($1, $2)"
                " ON CONFLICT (stream_name) DO UPDATE SET position = excluded.position"
                " WHERE stream_watermarks.position < excluded.position",
                stream.value,
                position,
            )
