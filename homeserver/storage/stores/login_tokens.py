"""login_tokens: single-use tokens for `m.login.token`."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class LoginToken:
    user_id: str
    expiry_ts: int
    auth_provider_id: str | None


class LoginTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self, token_hash: str, user_id: str, expiry_ts: int, auth_provider_id: str | None
    ) -> None:
        await self.db.execute(
            "INSERT INTO login_tokens (token_hash, user_id, expiry_ts, auth_provider_id)"
            " VALUES ($1, $2, $3, $4)",
            token_hash,
            user_id,
            expiry_ts,
            auth_provider_id,
        )

    async def consume(self, token_hash: str, now: int) -> LoginToken | None:
        """Mark the token used and return it, if it exists, is unused and has not expired. One
        conditional UPDATE, so two concurrent logins with the same token cannot both win."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "UPDATE login_tokens SET used_ts = $2"
                " WHERE token_hash = $1 AND used_ts IS NULL AND expiry_ts > $2"
                " RETURNING user_id, expiry_ts, auth_provider_id",
                token_hash,
                now,
            )
        return LoginToken(str(row[0]), int(row[1]), row[2]) if row is not None else None

    async def delete_expired(self, before_ts: int) -> None:
        await self.db.execute("DELETE FROM login_tokens WHERE expiry_ts < $1", before_ts)

    async def claim_sso_state(self, state: str, expiry_ts: int, now: int) -> bool:
        """Record an SSO callback's state; False when it was already used (a replay)."""
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM sso_used_states WHERE expiry_ts < $1", now)
            row = await conn.fetchrow(
                "INSERT INTO sso_used_states (state, expiry_ts) VALUES ($1, $2)"
                " ON CONFLICT (state) DO NOTHING RETURNING state",
                state,
                expiry_ts,
            )
        return row is not None
