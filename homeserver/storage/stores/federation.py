"""server_keys (remote verify keys, cached) and destinations (outbound backoff)."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Row


@dataclass(frozen=True, slots=True)
class StoredServerKey:
    server_name: str
    key_id: str
    verify_key: str  # unpadded base64
    valid_until_ts: int
    expired_ts: int | None
    fetched_from: str
    fetched_ts: int
    key_json: str  # the signed server-keys response the key came in


@dataclass(frozen=True, slots=True)
class DestinationRetry:
    destination: str
    failure_ts: int | None
    retry_last_ts: int
    retry_interval: int  # ms; 0 = healthy


_KEY_COLS = "server_name, key_id, verify_key, valid_until_ts, expired_ts, fetched_from, fetched_ts, key_json"


def _key(r: Row) -> StoredServerKey:
    return StoredServerKey(
        r[0], r[1], r[2], int(r[3]), int(r[4]) if r[4] is not None else None, r[5], int(r[6]), r[7]
    )


class ServerKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_server_key(self, server_name: str, key_id: str) -> StoredServerKey | None:
        row = await self.db.fetchrow(
            f"SELECT {_KEY_COLS} FROM server_keys WHERE server_name = $1 AND key_id = $2", server_name, key_id
        )
        return _key(row) if row is not None else None

    async def list_server_keys(self, server_name: str) -> list[StoredServerKey]:
        rows = await self.db.fetch(
            f"SELECT {_KEY_COLS} FROM server_keys WHERE server_name = $1 ORDER BY key_id", server_name
        )
        return [_key(r) for r in rows]

    async def upsert_server_keys(self, keys: list[StoredServerKey]) -> None:
        """Store the keys of one response together; a key is only replaced by a fresher copy."""
        async with self.db.transaction() as conn:
            for k in keys:
                await conn.execute(
                    f"INSERT INTO server_keys ({_KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    " ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key,"
                    " valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts,"
                    " fetched_from = excluded.fetched_from, fetched_ts = excluded.fetched_ts,"
                    " key_json = excluded.key_json"
                    " WHERE excluded.valid_until_ts >= server_keys.valid_until_ts",
                    k.server_name,
                    k.key_id,
                    k.verify_key,
                    k.valid_until_ts,
                    k.expired_ts,
                    k.fetched_from,
                    k.fetched_ts,
                    k.key_json,
                )


class DestinationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_destination(self, destination: str) -> DestinationRetry | None:
        row = await self.db.fetchrow(
            "SELECT destination, failure_ts, retry_last_ts, retry_interval FROM destinations"
            " WHERE destination = $1",
            destination,
        )
        if row is None:
            return None
        return DestinationRetry(row[0], int(row[1]) if row[1] is not None else None, int(row[2]), int(row[3]))

    async def upsert_destination(self, retry: DestinationRetry) -> None:
        await self.db.execute(
            "INSERT INTO destinations (destination, failure_ts, retry_last_ts, retry_interval)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (destination) DO UPDATE SET"
            " failure_ts = excluded.failure_ts, retry_last_ts = excluded.retry_last_ts,"
            " retry_interval = excluded.retry_interval",
            retry.destination,
            retry.failure_ts,
            retry.retry_last_ts,
            retry.retry_interval,
        )
