"""users and profiles tables."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Connection, Database, Row


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    password_hash: str | None
    created_ts: int
    is_admin: bool
    is_guest: bool
    deactivated: bool
    shadow_banned: bool
    locked: bool
    user_type: str | None
    appservice_id: str | None


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    displayname: str | None
    avatar_url: str | None


_USER_COLS = (
    "user_id, password_hash, created_ts, is_admin, is_guest, deactivated, shadow_banned, locked,"
    " user_type, appservice_id"
)


def _user(row: Row) -> User:
    r = row  # sqlite3.Row / asyncpg.Record
    return User(
        r["user_id"],
        r["password_hash"],
        int(r["created_ts"]),
        bool(r["is_admin"]),
        bool(r["is_guest"]),
        bool(r["deactivated"]),
        bool(r["shadow_banned"]),
        bool(r["locked"]),
        r["user_type"],
        r["appservice_id"],
    )


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_user(self, user_id: str) -> User | None:
        row = await self.db.fetchrow(f"SELECT {_USER_COLS} FROM users WHERE user_id = $1", user_id)
        return _user(row) if row else None

    async def get_user_case_insensitive(self, user_id: str) -> list[User]:
        rows = await self.db.fetch(
            f"SELECT {_USER_COLS} FROM users WHERE lower(user_id) = lower($1)", user_id
        )
        return [_user(r) for r in rows]

    async def user_id_taken_txn(self, conn: Connection, user_id: str) -> bool:
        """Whether a user id equal to `user_id` up to case exists (ids differing in case collide)."""
        return bool(await conn.fetchval("SELECT 1 FROM users WHERE lower(user_id) = lower($1)", user_id))

    async def insert_user_txn(
        self,
        conn: Connection,
        user_id: str,
        password_hash: str | None,
        created_ts: int,
        *,
        is_admin: bool = False,
        is_guest: bool = False,
        user_type: str | None = None,
        appservice_id: str | None = None,
    ) -> bool:
        """False when the user id exists (a concurrent registration of the same name won)."""
        row = await conn.fetchrow(
            "INSERT INTO users (user_id, password_hash, created_ts, is_admin, is_guest, user_type,"
            " appservice_id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
            user_id,
            password_hash,
            created_ts,
            is_admin,
            is_guest,
            user_type,
            appservice_id,
        )
        return row is not None

    async def set_password_hash_txn(self, conn: Connection, user_id: str, password_hash: str | None) -> None:
        await conn.execute("UPDATE users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash)

    async def set_deactivated_txn(self, conn: Connection, user_id: str, deactivated: bool) -> None:
        await conn.execute("UPDATE users SET deactivated = $2 WHERE user_id = $1", user_id, deactivated)

    async def set_admin(self, user_id: str, is_admin: bool) -> bool:
        """Sets the server-admin flag; False when there is no such user."""
        async with self.db.transaction() as conn:
            found = await conn.fetchval(
                "UPDATE users SET is_admin = $2 WHERE user_id = $1 RETURNING user_id", user_id, is_admin
            )
        return found is not None

    async def count_users(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM users"))

    # -- profiles ------------------------------------------------------------------------------

    async def get_profile(self, user_id: str) -> Profile | None:
        row = await self.db.fetchrow(
            "SELECT user_id, displayname, avatar_url FROM profiles WHERE user_id = $1", user_id
        )
        return Profile(row["user_id"], row["displayname"], row["avatar_url"]) if row else None

    async def insert_profile_txn(self, conn: Connection, user_id: str, displayname: str | None) -> None:
        await conn.execute(
            "INSERT INTO profiles (user_id, displayname) VALUES ($1, $2)", user_id, displayname
        )

    async def set_displayname(self, user_id: str, displayname: str | None) -> None:
        await self.db.execute("UPDATE profiles SET displayname = $2 WHERE user_id = $1", user_id, displayname)

    async def set_avatar_url(self, user_id: str, avatar_url: str | None) -> None:
        await self.db.execute("UPDATE profiles SET avatar_url = $2 WHERE user_id = $1", user_id, avatar_url)

    async def mark_erased_txn(self, conn: Connection, user_id: str) -> None:
        await conn.execute("UPDATE users SET erased = TRUE WHERE user_id = $1", user_id)

    async def delete_threepids_txn(self, conn: Connection, user_id: str) -> None:
        await conn.execute("DELETE FROM user_threepids WHERE user_id = $1", user_id)

    async def clear_profile_txn(self, conn: Connection, user_id: str) -> None:
        await conn.execute(
            "UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = $1", user_id
        )
