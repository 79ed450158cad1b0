"""What the admin API reads and writes about accounts beyond `users.py`: the paged user list, account
flags (shadow-ban, suspension, lock, erasure, user type), third-party ids, SSO external ids,
rate-limit overrides and a user's media."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Connection, Database, Row


@dataclass(frozen=True, slots=True)
class AdminUserRow:
    user_id: str
    is_guest: bool
    is_admin: bool
    user_type: str | None
    deactivated: bool
    erased: bool
    shadow_banned: bool
    locked: bool
    suspended: bool
    displayname: str | None
    avatar_url: str | None
    created_ts: int
    last_seen_ts: int | None
    appservice_id: str | None


@dataclass(frozen=True, slots=True)
class UserListQuery:
    user_id: str | None = None  # substring of the user id
    name: str | None = None  # substring of the localpart or the display name
    guests: bool = True
    deactivated: bool = False  # include deactivated accounts
    only_deactivated: bool = False  # v3's `deactivated=true`: nothing but deactivated accounts
    admins: bool | None = None
    locked: bool = False
    not_user_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Threepid:
    medium: str
    address: str
    validated_at: int
    added_at: int


@dataclass(frozen=True, slots=True)
class RatelimitOverride:
    messages_per_second: int
    burst_count: int


@dataclass(frozen=True, slots=True)
class UserMedia:
    media_id: str
    media_type: str | None
    media_length: int | None
    upload_name: str | None
    created_ts: int
    last_access_ts: int | None
    quarantined_by: str | None
    safe_from_quarantine: bool


# Sort columns for `order_by` (Synapse's names); ties are broken by the user id.
USER_ORDER = {
    "name": "u.user_id",
    "is_guest": "u.is_guest",
    "admin": "u.is_admin",
    "user_type": "u.user_type",
    "deactivated": "u.deactivated",
    "shadow_banned": "u.shadow_banned",
    "displayname": "p.displayname",
    "avatar_url": "p.avatar_url",
    "creation_ts": "u.created_ts",
    "last_seen_ts": "last_seen_ts",
    "locked": "u.locked",
}

MEDIA_ORDER = {
    "media_id": "media_id",
    "upload_name": "upload_name",
    "created_ts": "created_ts",
    "last_access_ts": "last_access_ts",
    "media_length": "media_length",
    "media_type": "media_type",
    "quarantined_by": "quarantined_by",
    "safe_from_quarantine": "safe_from_quarantine",
}

_USER_SELECT = (
    "SELECT u.user_id, u.is_guest, u.is_admin, u.user_type, u.deactivated, u.erased, u.shadow_banned,"
    " u.locked, u.suspended, p.displayname, p.avatar_url, u.created_ts,"
    " (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts,"
    " u.appservice_id"
    " FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
)


def _user(r: Row) -> AdminUserRow:
    return AdminUserRow(
        r[0],
        bool(r[1]),
        bool(r[2]),
        r[3],
        bool(r[4]),
        bool(r[5]),
        bool(r[6]),
        bool(r[7]),
        bool(r[8]),
        r[9],
        r[10],
        int(r[11]),
        int(r[12]) if r[12] is not None else None,
        r[13],
    )


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


class AdminUserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users ---------------------------------------------------------------------------------

    async def get_user(self, user_id: str) -> AdminUserRow | None:
        row = await self.db.fetchrow(f"{_USER_SELECT} WHERE u.user_id = $1", user_id)
        return _user(row) if row else None

    async def list_users(
        self, query: UserListQuery, *, offset: int, limit: int, order_by: str, descending: bool
    ) -> tuple[list[AdminUserRow], int]:
        """One page of local users and how many match in total."""
        clauses: list[str] = []
        args: list[Any] = []

        def add(sql: str, *values: Any) -> None:
            for value in values:
                args.append(value)
                sql = sql.replace("?", f"${len(args)}", 1)
            clauses.append(sql)

        if query.name is not None:
            add(
                "(lower(u.user_id) LIKE ? ESCAPE '\\'"
                " OR lower(COALESCE(p.displayname, '')) LIKE ? ESCAPE '\\')",
                "@" + _like(query.name) + ":%",  # the localpart: between '@' and the first ':'
                _like(query.name),
            )
        elif query.user_id is not None:
            add("lower(u.user_id) LIKE ? ESCAPE '\\'", _like(query.user_id))
        if not query.guests:
            clauses.append("NOT u.is_guest")
        if query.only_deactivated:
            clauses.append("u.deactivated")
        elif not query.deactivated:
            clauses.append("NOT u.deactivated")
        if query.admins is not None:
            clauses.append("u.is_admin" if query.admins else "NOT u.is_admin")
        if not query.locked:
            clauses.append("NOT u.locked")
        for user_type in query.not_user_types:
            if user_type == "":
                clauses.append("u.user_type IS NOT NULL")
            else:
                add("(u.user_type IS NULL OR u.user_type <> ?)", user_type)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        total = int(
            await self.db.fetchval(
                f"SELECT COUNT(*) FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id{where}", *args
            )
            or 0
        )
        column = USER_ORDER[order_by]
        direction = "DESC" if descending else "ASC"
        # NULLs sort as the smallest value on both engines.
        nulls = "NULLS FIRST" if not descending else "NULLS LAST"
        rows = await self.db.fetch(
            f"{_USER_SELECT}{where} ORDER BY {column} {direction} {nulls}, u.user_id ASC"
            f" LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
            *args,
            limit,
            offset,
        )
        return [_user(r) for r in rows], total

    async def member_events_since(
        self, from_ts: int, *, sender: str | None = None, target: str | None = None
    ) -> list[tuple[str, str, str]]:
        """`(room_id, state_key, membership)` of accepted membership events sent by `sender` or about
        `target` at or after `from_ts` (ms): the admin API's invite and joined-room counts."""
        column, value = ("sender", sender) if sender is not None else ("state_key", target)
        if value is None:
            raise ValueError("sender or target is required")
        rows = await self.db.fetch(
            f"SELECT room_id, state_key, json FROM events WHERE type = 'm.room.member' AND {column} = $1"
            " AND origin_server_ts >= $2 AND rejected_reason IS NULL AND NOT outlier",
            value,
            from_ts,
        )
        out: list[tuple[str, str, str]] = []
        for room_id, state_key, raw in rows:
            content = json.loads(raw).get("content")
            membership = content.get("membership") if isinstance(content, dict) else None
            if isinstance(membership, str):
                out.append((room_id, state_key, membership))
        return out

    async def set_flag(self, user_id: str, flag: str, value: bool) -> bool:
        """Set one boolean account flag; False when there is no such user."""
        if flag not in ("shadow_banned", "suspended", "locked", "erased"):
            raise ValueError(flag)
        async with self.db.transaction() as conn:
            return await self.set_flag_txn(conn, user_id, flag, value)

    async def set_flag_txn(self, conn: Connection, user_id: str, flag: str, value: bool) -> bool:
        if flag not in ("shadow_banned", "suspended", "locked", "erased", "is_admin", "deactivated"):
            raise ValueError(flag)
        found = await conn.fetchval(
            f"UPDATE users SET {flag} = $2 WHERE user_id = $1 RETURNING user_id", user_id, value
        )
        return found is not None

    async def set_user_type_txn(self, conn: Connection, user_id: str, user_type: str | None) -> None:
        await conn.execute("UPDATE users SET user_type = $2 WHERE user_id = $1", user_id, user_type)

    async def set_profile_field_txn(
        self, conn: Connection, user_id: str, field: str, value: str | None
    ) -> None:
        if field not in ("displayname", "avatar_url"):
            raise ValueError(field)
        await conn.execute(f"UPDATE profiles SET {field} = $2 WHERE user_id = $1", user_id, value)

    async def get_restrictions(self, user_id: str) -> tuple[bool, bool]:
        """(shadow_banned, suspended); both False for an unknown user."""
        row = await self.db.fetchrow("SELECT shadow_banned, suspended FROM users WHERE user_id = $1", user_id)
        return (bool(row[0]), bool(row[1])) if row else (False, False)

    # -- threepids and external ids ------------------------------------------------------------

    async def list_threepids(self, user_id: str) -> list[Threepid]:
        rows = await self.db.fetch(
            "SELECT medium, address, validated_at, added_at FROM user_threepids WHERE user_id = $1"
            " ORDER BY medium, address",
            user_id,
        )
        return [Threepid(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    async def threepid_owner(self, medium: str, address: str) -> str | None:
        row = await self.db.fetchrow(
            "SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2", medium, address
        )
        return str(row[0]) if row else None

    async def threepid_owner_txn(self, conn: Connection, medium: str, address: str) -> str | None:
        owner: str | None = await conn.fetchval(
            "SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2", medium, address
        )
        return owner

    async def replace_threepids_txn(
        self, conn: Connection, user_id: str, threepids: list[tuple[str, str]], now: int
    ) -> None:
        existing = {
            (r[0], r[1]): (int(r[2]), int(r[3]))
            for r in await conn.fetch(
                "SELECT medium, address, validated_at, added_at FROM user_threepids WHERE user_id = $1",
                user_id,
            )
        }
        await conn.execute("DELETE FROM user_threepids WHERE user_id = $1", user_id)
        for medium, address in dict.fromkeys(threepids):
            validated, added = existing.get((medium, address), (now, now))
            await conn.execute(
                "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                user_id,
                medium,
                address,
                validated,
                added,
            )

    async def delete_threepids_txn(self, conn: Connection, user_id: str) -> None:
        await conn.execute("DELETE FROM user_threepids WHERE user_id = $1", user_id)

    async def list_external_ids(self, user_id: str) -> list[tuple[str, str]]:
        rows = await self.db.fetch(
            "SELECT auth_provider, external_id FROM user_external_ids WHERE user_id = $1"
            " ORDER BY auth_provider, external_id",
            user_id,
        )
        return [(r[0], r[1]) for r in rows]

    async def external_id_owner(self, provider: str, external_id: str) -> str | None:
        row = await self.db.fetchrow(
            "SELECT user_id FROM user_external_ids WHERE auth_provider = $1 AND external_id = $2",
            provider,
            external_id,
        )
        return str(row[0]) if row else None

    async def add_external_id_txn(
        self, conn: Connection, provider: str, external_id: str, user_id: str
    ) -> None:
        await conn.execute(
            "INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES ($1, $2, $3)",
            provider,
            external_id,
            user_id,
        )

    async def link_external_id_txn(
        self, conn: Connection, provider: str, external_id: str, user_id: str
    ) -> str:
        """Link the external id to `user_id` unless it is already linked; returns its owner (a
        concurrent first login may have linked it to another account first)."""
        await conn.execute(
            "INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (auth_provider, external_id) DO NOTHING",
            provider,
            external_id,
            user_id,
        )
        owner: str = await conn.fetchval(
            "SELECT user_id FROM user_external_ids WHERE auth_provider = $1 AND external_id = $2",
            provider,
            external_id,
        )
        return owner

    async def external_id_owner_txn(self, conn: Connection, provider: str, external_id: str) -> str | None:
        owner: str | None = await conn.fetchval(
            "SELECT user_id FROM user_external_ids WHERE auth_provider = $1 AND external_id = $2",
            provider,
            external_id,
        )
        return owner

    async def replace_external_ids_txn(
        self, conn: Connection, user_id: str, external_ids: list[tuple[str, str]]
    ) -> None:
        await conn.execute("DELETE FROM user_external_ids WHERE user_id = $1", user_id)
        for provider, external_id in dict.fromkeys(external_ids):
            await conn.execute(
                "INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES ($1, $2, $3)",
                provider,
                external_id,
                user_id,
            )

    # -- rate-limit overrides ------------------------------------------------------------------

    async def list_ratelimit_overrides(self) -> dict[str, RatelimitOverride]:
        rows = await self.db.fetch("SELECT user_id, messages_per_second, burst_count FROM ratelimit_override")
        return {r[0]: RatelimitOverride(int(r[1]), int(r[2])) for r in rows}

    async def get_ratelimit_override(self, user_id: str) -> RatelimitOverride | None:
        row = await self.db.fetchrow(
            "SELECT messages_per_second, burst_count FROM ratelimit_override WHERE user_id = $1", user_id
        )
        return RatelimitOverride(int(row[0]), int(row[1])) if row else None

    async def set_ratelimit_override_txn(
        self, conn: Connection, user_id: str, override: RatelimitOverride | None
    ) -> None:
        await conn.execute("DELETE FROM ratelimit_override WHERE user_id = $1", user_id)
        if override is not None:
            await conn.execute(
                "INSERT INTO ratelimit_override (user_id, messages_per_second, burst_count)"
                " VALUES ($1, $2, $3)",
                user_id,
                override.messages_per_second,
                override.burst_count,
            )

    # -- media ---------------------------------------------------------------------------------

    async def list_user_media(
        self, user_id: str, origin: str, *, offset: int, limit: int, order_by: str, descending: bool
    ) -> tuple[list[UserMedia], int]:
        total = int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM media WHERE origin = $1 AND user_id = $2", origin, user_id
            )
            or 0
        )
        column = MEDIA_ORDER[order_by]
        direction = "DESC" if descending else "ASC"
        nulls = "NULLS FIRST" if not descending else "NULLS LAST"
        rows = await self.db.fetch(
            "SELECT media_id, media_type, media_length, upload_name, created_ts, last_access_ts,"
            " quarantined_by, safe_from_quarantine FROM media WHERE origin = $1 AND user_id = $2"
            f" ORDER BY {column} {direction} {nulls}, media_id ASC LIMIT $3 OFFSET $4",
            origin,
            user_id,
            limit,
            offset,
        )
        media = [
            UserMedia(
                r[0],
                r[1],
                int(r[2]) if r[2] is not None else None,
                r[3],
                int(r[4]),
                int(r[5]) if r[5] is not None else None,
                r[6],
                bool(r[7]),
            )
            for r in rows
        ]
        return media, total

    # -- puppet tokens -------------------------------------------------------------------------

    async def insert_puppet_token_txn(
        self,
        conn: Connection,
        token_hash: str,
        user_id: str,
        admin_id: str,
        now: int,
        valid_until: int | None,
    ) -> None:
        """An access token for `user_id` with no device, made by `admin_id` (admin "login as")."""
        await conn.execute(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, valid_until_ts,"
            " puppets_user_id) VALUES ($1, $2, NULL, $3, $4, $5)",
            token_hash,
            user_id,
            now,
            valid_until,
            admin_id,
        )


@dataclass(frozen=True, slots=True)
class AdminDevice:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None
    last_seen_ts: int | None


async def list_admin_devices(db: Database, user_id: str, device_id: str | None = None) -> list[AdminDevice]:
    """A user's devices with the last-seen columns the admin API shows (one device if asked)."""
    sql = (
        "SELECT user_id, device_id, display_name, last_seen_ip, last_seen_user_agent, last_seen_ts"
        " FROM devices WHERE user_id = $1 AND NOT hidden"
    )
    args: list[Any] = [user_id]
    if device_id is not None:
        sql += " AND device_id = $2"
        args.append(device_id)
    rows = await db.fetch(sql + " ORDER BY device_id", *args)
    return [AdminDevice(r[0], r[1], r[2], r[3], r[4], int(r[5]) if r[5] is not None else None) for r in rows]
