"""Small table groups: UIA sessions, registration tokens, filters, shared-secret nonces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.core.json import dumps_str, loads
from homeserver.storage.database import Connection, Database


@dataclass(frozen=True, slots=True)
class UiaSession:
    session_id: str
    created_ts: int
    uri: str
    method: str
    completed: dict[str, Any]
    clientdict: dict[str, Any]
    user_id: str | None


@dataclass(frozen=True, slots=True)
class RegistrationToken:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None


class UiaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_session(
        self,
        session_id: str,
        now_ts: int,
        uri: str,
        method: str,
        clientdict: dict[str, Any],
        user_id: str | None,
    ) -> None:
        await self.db.execute(
            "INSERT INTO ui_auth_sessions (session_id, created_ts, uri, method, clientdict, user_id)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            session_id,
            now_ts,
            uri,
            method,
            dumps_str(clientdict),
            user_id,
        )

    async def get_session(self, session_id: str) -> UiaSession | None:
        row = await self.db.fetchrow(
            "SELECT session_id, created_ts, uri, method, completed, clientdict, user_id"
            " FROM ui_auth_sessions WHERE session_id = $1",
            session_id,
        )
        if not row:
            return None
        return UiaSession(row[0], int(row[1]), row[2], row[3], loads(row[4]), loads(row[5]), row[6])

    async def set_completed(self, session_id: str, completed: dict[str, Any]) -> None:
        await self.db.execute(
            "UPDATE ui_auth_sessions SET completed = $2 WHERE session_id = $1",
            session_id,
            dumps_str(completed),
        )

    async def add_completed(self, session_id: str, stage: str, result: Any) -> None:
        """Add one completed stage, read and written in one transaction (with the row locked on
        PostgreSQL) so that a stage completed concurrently by another request is not lost."""
        async with self.db.transaction() as conn:
            lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
            raw = await conn.fetchval(
                f"SELECT completed FROM ui_auth_sessions WHERE session_id = $1{lock}", session_id
            )
            if raw is None:
                return
            completed = loads(raw)
            completed[stage] = result
            await conn.execute(
                "UPDATE ui_auth_sessions SET completed = $2 WHERE session_id = $1",
                session_id,
                dumps_str(completed),
            )

    async def delete_session(self, session_id: str) -> None:
        await self.db.execute("DELETE FROM ui_auth_sessions WHERE session_id = $1", session_id)

    async def delete_sessions_before(self, ts: int) -> None:
        await self.db.execute("DELETE FROM ui_auth_sessions WHERE created_ts < $1", ts)


class RegistrationTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_token(self, token: str) -> RegistrationToken | None:
        row = await self.db.fetchrow(
            "SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens"
            " WHERE token = $1",
            token,
        )
        return RegistrationToken(row[0], row[1], int(row[2]), int(row[3]), row[4]) if row else None

    async def list_tokens(self) -> list[RegistrationToken]:
        rows = await self.db.fetch(
            "SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens"
            " ORDER BY token"
        )
        return [RegistrationToken(r[0], r[1], int(r[2]), int(r[3]), r[4]) for r in rows]

    async def insert_token(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        async with self.db.transaction() as conn:
            if await conn.fetchval("SELECT 1 FROM registration_tokens WHERE token = $1", token):
                return False
            await conn.execute(
                "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ($1, $2, $3)",
                token,
                uses_allowed,
                expiry_time,
            )
            return True

    async def update_token_txn(self, conn: Connection, token: str, changes: dict[str, int | None]) -> None:
        """Set `uses_allowed` and/or `expiry_time` (the admin API's PUT)."""
        for column in ("uses_allowed", "expiry_time"):
            if column in changes:
                await conn.execute(
                    f"UPDATE registration_tokens SET {column} = $2 WHERE token = $1", token, changes[column]
                )

    async def delete_token(self, token: str) -> None:
        await self.db.execute("DELETE FROM registration_tokens WHERE token = $1", token)

    async def use_token_txn(self, conn: Connection, token: str, now_ts: int) -> bool:
        """Count one completed registration against the token; False if it is not usable."""
        row = await conn.fetchrow(
            "SELECT uses_allowed, completed, expiry_time FROM registration_tokens WHERE token = $1",
            token,
        )
        if not row:
            return False
        uses_allowed, completed, expiry = row[0], int(row[1]), row[2]
        if expiry is not None and expiry < now_ts:
            return False
        if uses_allowed is not None and completed >= uses_allowed:
            return False
        await conn.execute("UPDATE registration_tokens SET completed = completed + 1 WHERE token = $1", token)
        return True


class FilterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_filter(self, user_id: str, filter_json: dict[str, Any]) -> int:
        text = dumps_str(filter_json)
        async with self.db.transaction() as conn:
            # Identical filters get the same id: clients upload the same filter at every start.
            existing = await conn.fetchval(
                "SELECT filter_id FROM user_filters WHERE user_id = $1 AND filter_json = $2",
                user_id,
                text,
            )
            if existing is not None:
                return int(existing)
            next_id = await conn.fetchval(
                "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM user_filters WHERE user_id = $1", user_id
            )
            await conn.execute(
                "INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES ($1, $2, $3)",
                user_id,
                int(next_id),
                text,
            )
            return int(next_id)

    async def get_filter(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        text = await self.db.fetchval(
            "SELECT filter_json FROM user_filters WHERE user_id = $1 AND filter_id = $2",
            user_id,
            filter_id,
        )
        return loads(text) if text is not None else None


class NonceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_nonce(self, nonce: str, now_ts: int) -> None:
        await self.db.execute(
            "INSERT INTO shared_secret_nonces (nonce, created_ts) VALUES ($1, $2)", nonce, now_ts
        )

    async def take_nonce(self, nonce: str, not_before_ts: int) -> bool:
        """Consume a nonce once; False when unknown, expired or already used."""
        async with self.db.transaction() as conn:
            created = await conn.fetchval(
                "SELECT created_ts FROM shared_secret_nonces WHERE nonce = $1", nonce
            )
            if created is None:
                return False
            await conn.execute("DELETE FROM shared_secret_nonces WHERE nonce = $1", nonce)
            return int(created) >= not_before_ts
