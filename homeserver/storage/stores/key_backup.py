"""Server-side key backups: e2e_room_keys_versions and e2e_room_keys (schema/0007_e2ee.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core.json import dumps_str, loads
from homeserver.storage.database import Connection, Database


@dataclass(frozen=True, slots=True)
class BackupVersion:
    user_id: str
    version: int
    algorithm: str
    auth_data: dict[str, Any]
    etag: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class RoomKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        }


def _version(r: Any) -> BackupVersion:
    return BackupVersion(r[0], int(r[1]), r[2], loads(r[3]), int(r[4]), bool(r[5]))


_VERSION_COLS = "user_id, version, algorithm, auth_data, etag, deleted"
_KEY_COLS = "room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"


def _key(r: Any) -> RoomKey:
    return RoomKey(r[0], r[1], int(r[2]), int(r[3]), bool(r[4]), loads(r[5]))


class KeyBackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- versions --------------------------------------------------------------------------------

    async def get_version(self, user_id: str, version: int | None = None) -> BackupVersion | None:
        """A live (not deleted) version; the latest one when `version` is None."""
        if version is None:
            row = await self.db.fetchrow(
                f"SELECT {_VERSION_COLS} FROM e2e_room_keys_versions WHERE user_id = $1 AND NOT deleted"
                " ORDER BY version DESC LIMIT 1",
                user_id,
            )
        else:
            row = await self.db.fetchrow(
                f"SELECT {_VERSION_COLS} FROM e2e_room_keys_versions WHERE user_id = $1 AND version = $2",
                user_id,
                version,
            )
        return _version(row) if row is not None else None

    async def get_version_txn(self, conn: Connection, user_id: str, version: int) -> BackupVersion | None:
        row = await conn.fetchrow(
            f"SELECT {_VERSION_COLS} FROM e2e_room_keys_versions WHERE user_id = $1 AND version = $2",
            user_id,
            version,
        )
        return _version(row) if row is not None else None

    async def current_version_txn(self, conn: Connection, user_id: str) -> int | None:
        value = await conn.fetchval(
            "SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = $1 AND NOT deleted", user_id
        )
        return int(value) if value is not None else None

    async def insert_version(self, user_id: str, algorithm: str, auth_data: dict[str, Any]) -> int:
        """A new version number, one above any this user ever had (deleted ones included)."""
        for _ in range(10):
            async with self.db.transaction() as conn:
                value = await conn.fetchval(
                    "INSERT INTO e2e_room_keys_versions"
                    " (user_id, version, algorithm, auth_data, etag, deleted)"
                    " SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, 0, FALSE FROM e2e_room_keys_versions"
                    " WHERE user_id = $1 ON CONFLICT DO NOTHING RETURNING version",
                    user_id,
                    algorithm,
                    dumps_str(auth_data),
                )
            if value is not None:
                return int(value)
        raise RuntimeError("could not allocate a backup version")

    async def update_auth_data(self, user_id: str, version: int, auth_data: dict[str, Any]) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE e2e_room_keys_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2",
                user_id,
                version,
                dumps_str(auth_data),
            )

    async def delete_version(self, user_id: str, version: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2", user_id, version
            )
            await conn.execute(
                "UPDATE e2e_room_keys_versions SET deleted = TRUE WHERE user_id = $1 AND version = $2",
                user_id,
                version,
            )

    async def bump_etag_txn(self, conn: Connection, user_id: str, version: int) -> int:
        value = await conn.fetchval(
            "UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2"
            " RETURNING etag",
            user_id,
            version,
        )
        return int(value)

    # -- keys ------------------------------------------------------------------------------------

    async def count_keys(self, user_id: str, version: int) -> int:
        value = await self.db.fetchval(
            "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = $1 AND version = $2", user_id, version
        )
        return int(value or 0)

    async def count_keys_txn(self, conn: Connection, user_id: str, version: int) -> int:
        value = await conn.fetchval(
            "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = $1 AND version = $2", user_id, version
        )
        return int(value or 0)

    async def list_keys(
        self, user_id: str, version: int, room_id: str | None = None, session_id: str | None = None
    ) -> list[RoomKey]:
        sql = f"SELECT {_KEY_COLS} FROM e2e_room_keys WHERE user_id = $1 AND version = $2"
        args: list[Any] = [user_id, version]
        if room_id is not None:
            sql += " AND room_id = $3"
            args.append(room_id)
            if session_id is not None:
                sql += " AND session_id = $4"
                args.append(session_id)
        rows = await self.db.fetch(sql, *args)
        return [_key(r) for r in rows]

    async def list_keys_txn(
        self, conn: Connection, user_id: str, version: int, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], RoomKey]:
        """The stored keys among (room_id, session_id) pairs, fetched room by room."""
        by_room: dict[str, set[str]] = {}
        for room_id, session_id in pairs:
            by_room.setdefault(room_id, set()).add(session_id)
        out: dict[tuple[str, str], RoomKey] = {}
        for room_id, sessions in by_room.items():
            rows = await conn.fetch(
                f"SELECT {_KEY_COLS} FROM e2e_room_keys WHERE user_id = $1 AND version = $2 AND room_id = $3",
                user_id,
                version,
                room_id,
            )
            for r in rows:
                if r[1] in sessions:
                    out[(r[0], r[1])] = _key(r)
        return out

    async def upsert_keys_txn(
        self, conn: Connection, user_id: str, version: int, keys: Sequence[RoomKey]
    ) -> None:
        await conn.executemany(
            f"INSERT INTO e2e_room_keys (user_id, version, {_KEY_COLS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
            " first_message_index = excluded.first_message_index,"
            " forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified,"
            " session_data = excluded.session_data",
            [
                (
                    user_id,
                    version,
                    k.room_id,
                    k.session_id,
                    k.first_message_index,
                    k.forwarded_count,
                    k.is_verified,
                    dumps_str(k.session_data),
                )
                for k in keys
            ],
        )

    async def delete_keys_txn(
        self, conn: Connection, user_id: str, version: int, room_id: str | None, session_id: str | None
    ) -> None:
        sql = "DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2"
        args: list[Any] = [user_id, version]
        if room_id is not None:
            sql += " AND room_id = $3"
            args.append(room_id)
            if session_id is not None:
                sql += " AND session_id = $4"
                args.append(session_id)
        await conn.execute(sql, *args)
