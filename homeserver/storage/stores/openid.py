"""open_id_tokens: tokens a user hands to another service to prove who they are."""

from __future__ import annotations

from homeserver.storage.database import Database


class OpenIdStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_token(self, token_hash: str, user_id: str, valid_until_ms: int, now_ms: int) -> None:
        """Store a new token and drop the expired ones, in one transaction."""
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM open_id_tokens WHERE ts_valid_until_ms <= $1", now_ms)
            await conn.execute(
                "INSERT INTO open_id_tokens (token_hash, user_id, ts_valid_until_ms) VALUES ($1, $2, $3)",
                token_hash,
                user_id,
                valid_until_ms,
            )

    async def get_user_id(self, token_hash: str, now_ms: int) -> str | None:
        """The owner of an unexpired token."""
        value = await self.db.fetchval(
            "SELECT user_id FROM open_id_tokens WHERE token_hash = $1 AND ts_valid_until_ms > $2",
            token_hash,
            now_ms,
        )
        return str(value) if value is not None else None
