"""devices, access_tokens and refresh_tokens tables."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Connection, Database, Row


@dataclass(frozen=True, slots=True)
class Device:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None


@dataclass(frozen=True, slots=True)
class AccessToken:
    token_hash: str
    user_id: str
    device_id: str | None
    created_ts: int
    valid_until_ts: int | None
    refresh_token_hash: str | None
    is_admin: bool
    deactivated: bool
    is_guest: bool
    appservice_id: str | None
    locked: bool = False


@dataclass(frozen=True, slots=True)
class RefreshToken:
    token_hash: str
    user_id: str
    device_id: str
    created_ts: int
    expiry_ts: int | None
    ultimate_session_expiry_ts: int | None
    next_token_hash: str | None


def _device(r: Row) -> Device:
    return Device(
        r["user_id"],
        r["device_id"],
        r["display_name"],
        r["last_seen_ts"],
        r["last_seen_ip"],
    )


class DeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- devices -------------------------------------------------------------------------------

    async def get_device(self, user_id: str, device_id: str) -> Device | None:
        row = await self.db.fetchrow(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = $1 AND device_id = $2 AND NOT hidden",
            user_id,
            device_id,
        )
        return _device(row) if row else None

    async def list_devices(self, user_id: str) -> list[Device]:
        rows = await self.db.fetch(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = $1 AND NOT hidden ORDER BY device_id",
            user_id,
        )
        return [_device(r) for r in rows]

    async def list_devices_of_users(self, user_ids: list[str]) -> list[Device]:
        if not user_ids:
            return []
        placeholders = ", ".join(f"${i + 1}" for i in range(len(user_ids)))
        rows = await self.db.fetch(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            f" WHERE user_id IN ({placeholders}) AND NOT hidden",
            *user_ids,
        )
        return [_device(r) for r in rows]

    async def upsert_device_txn(
        self, conn: Connection, user_id: str, device_id: str, display_name: str | None, now_ts: int
    ) -> bool:
        """Create the device if missing. Returns True when it was created."""
        existing = await conn.fetchval(
            "SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2", user_id, device_id
        )
        if existing:
            if display_name is not None:
                await conn.execute(
                    "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
                    user_id,
                    device_id,
                    display_name,
                )
            return False
        await conn.execute(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, $4)",
            user_id,
            device_id,
            display_name,
            now_ts,
        )
        return True

    async def set_display_name(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        async with self.db.transaction() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2 AND NOT hidden",
                user_id,
                device_id,
            )
            if not found:
                return False
            await conn.execute(
                "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
                user_id,
                device_id,
                display_name,
            )
            return True

    async def delete_devices_txn(self, conn: Connection, user_id: str, device_ids: list[str]) -> None:
        for device_id in device_ids:
            await conn.execute(
                "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2", user_id, device_id
            )
            await conn.execute(
                "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2", user_id, device_id
            )
            await conn.execute(
                "DELETE FROM devices WHERE user_id = $1 AND device_id = $2", user_id, device_id
            )

    # -- access tokens -------------------------------------------------------------------------

    async def get_access_token(self, token_hash: str) -> AccessToken | None:
        row = await self.db.fetchrow(
            "SELECT t.token_hash, t.user_id, t.device_id, t.created_ts, t.valid_until_ts,"
            " t.refresh_token_hash, u.is_admin, u.deactivated, u.is_guest, u.appservice_id, u.locked"
            " FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = $1",
            token_hash,
        )
        if not row:
            return None
        return AccessToken(
            row["token_hash"],
            row["user_id"],
            row["device_id"],
            int(row["created_ts"]),
            row["valid_until_ts"],
            row["refresh_token_hash"],
            bool(row["is_admin"]),
            bool(row["deactivated"]),
            bool(row["is_guest"]),
            row["appservice_id"],
            bool(row["locked"]),
        )

    async def insert_access_token_txn(
        self,
        conn: Connection,
        token_hash: str,
        user_id: str,
        device_id: str | None,
        now_ts: int,
        valid_until_ts: int | None = None,
        refresh_token_hash: str | None = None,
    ) -> None:
        await conn.execute(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, valid_until_ts,"
            " refresh_token_hash) VALUES ($1, $2, $3, $4, $5, $6)",
            token_hash,
            user_id,
            device_id,
            now_ts,
            valid_until_ts,
            refresh_token_hash,
        )

    async def delete_access_token(self, token_hash: str) -> None:
        await self.db.execute("DELETE FROM access_tokens WHERE token_hash = $1", token_hash)

    async def list_token_hashes_txn(
        self, conn: Connection, user_id: str, except_device_id: str | None = None
    ) -> list[str]:
        rows = await conn.fetch(
            "SELECT token_hash FROM access_tokens WHERE user_id = $1"
            " AND (CAST($2 AS TEXT) IS NULL OR device_id IS NULL OR device_id <> $2)",
            user_id,
            except_device_id,
        )
        return [r[0] for r in rows]

    async def delete_access_token_txn(self, conn: Connection, token_hash: str) -> None:
        await conn.execute("DELETE FROM access_tokens WHERE token_hash = $1", token_hash)

    async def delete_puppet_tokens_txn(self, conn: Connection, admin_id: str) -> list[str]:
        """Delete the device-less "login as" tokens `admin_id` made; returns their hashes."""
        rows = await conn.fetch("SELECT token_hash FROM access_tokens WHERE puppets_user_id = $1", admin_id)
        await conn.execute("DELETE FROM access_tokens WHERE puppets_user_id = $1", admin_id)
        return [r[0] for r in rows]

    async def delete_access_tokens_txn(
        self, conn: Connection, user_id: str, except_device_id: str | None = None
    ) -> None:
        """Every access token of the user, or all but those of `except_device_id`."""
        if except_device_id is None:
            await conn.execute("DELETE FROM access_tokens WHERE user_id = $1", user_id)
            return
        await conn.execute(
            "DELETE FROM access_tokens WHERE user_id = $1 AND (device_id IS NULL OR device_id <> $2)",
            user_id,
            except_device_id,
        )

    async def list_token_hashes_for_device_txn(
        self, conn: Connection, user_id: str, device_id: str
    ) -> list[str]:
        rows = await conn.fetch(
            "SELECT token_hash FROM access_tokens WHERE user_id = $1 AND device_id = $2",
            user_id,
            device_id,
        )
        return [r[0] for r in rows]

    async def list_device_ids_txn(self, conn: Connection, user_id: str) -> list[str]:
        rows = await conn.fetch("SELECT device_id FROM devices WHERE user_id = $1", user_id)
        return [r[0] for r in rows]

    # -- refresh tokens ------------------------------------------------------------------------

    async def insert_refresh_token_txn(
        self,
        conn: Connection,
        token_hash: str,
        user_id: str,
        device_id: str,
        now_ts: int,
        expiry_ts: int | None,
        ultimate_expiry_ts: int | None,
    ) -> None:
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts, expiry_ts,"
            " ultimate_session_expiry_ts) VALUES ($1, $2, $3, $4, $5, $6)",
            token_hash,
            user_id,
            device_id,
            now_ts,
            expiry_ts,
            ultimate_expiry_ts,
        )

    async def get_refresh_token_txn(self, conn: Connection, token_hash: str) -> RefreshToken | None:
        row = await conn.fetchrow(
            "SELECT token_hash, user_id, device_id, created_ts, expiry_ts, ultimate_session_expiry_ts,"
            " next_token_hash FROM refresh_tokens WHERE token_hash = $1",
            token_hash,
        )
        if not row:
            return None
        return RefreshToken(row[0], row[1], row[2], int(row[3]), row[4], row[5], row[6])

    async def set_next_refresh_token_txn(self, conn: Connection, token_hash: str, next_hash: str) -> None:
        await conn.execute(
            "UPDATE refresh_tokens SET next_token_hash = $2 WHERE token_hash = $1", token_hash, next_hash
        )

    async def retire_previous_refresh_token(self, new_refresh_hash: str) -> None:
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                "SELECT token_hash FROM refresh_tokens WHERE next_token_hash = $1", new_refresh_hash
            )
            for row in rows:
                await self.delete_refresh_token_txn(conn, row[0])

    async def delete_refresh_token_txn(self, conn: Connection, token_hash: str) -> None:
        await conn.execute("DELETE FROM refresh_tokens WHERE token_hash = $1", token_hash)
        await conn.execute("DELETE FROM access_tokens WHERE refresh_token_hash = $1", token_hash)
