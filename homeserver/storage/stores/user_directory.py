"""user_directory, user_directory_public_rooms: who `POST /user_directory/search` can find.

Which users the searcher may see is answered live from `room_memberships` (users sharing a joined
room with the searcher) and `user_directory_public_rooms` (users joined to public or world-readable
rooms), so membership changes need no bookkeeping here beyond the public-room flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Connection, Database
from homeserver.storage.search_dialect import SqlArgs, dialect_for, normalize


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    user_id: str
    display_name: str | None
    avatar_url: str | None


@dataclass(frozen=True, slots=True)
class DirectorySearch:
    searcher: str
    terms: tuple[str, ...]  # normalised, all must match (display name or user id, substring)
    limit: int
    search_all_users: bool = False
    exclude_remote_users: bool = False
    prefer_local_users: bool = False


class UserDirectoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = dialect_for(db.dialect)

    # -- writes ------------------------------------------------------------------------------------

    @staticmethod
    def _row(
        user_id: str, display_name: str | None, avatar_url: str | None, is_local: bool
    ) -> tuple[str, str | None, str | None, str, str, bool]:
        return (
            user_id,
            display_name,
            avatar_url,
            normalize(display_name or ""),
            normalize(user_id),
            is_local,
        )

    async def upsert_txn(
        self,
        conn: Connection,
        users: Sequence[tuple[str, str | None, str | None, bool]],
        *,
        overwrite: bool = True,
    ) -> None:
        """(user_id, display_name, avatar_url, is_local) rows; `overwrite=False` only adds missing."""
        if not users:
            return
        action = (
            "DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url,"
            " search_name = excluded.search_name, search_id = excluded.search_id"
            if overwrite
            else "DO NOTHING"
        )
        await conn.executemany(
            "INSERT INTO user_directory (user_id, display_name, avatar_url, search_name, search_id, is_local)"
            f" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) {action}",
            [self._row(*u) for u in users],
        )

    async def delete_user(self, user_id: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM user_directory WHERE user_id = $1", user_id)

    async def set_public_rooms_txn(self, conn: Connection, changes: Sequence[tuple[str, bool]]) -> None:
        for room_id, public in changes:
            if public:
                await conn.execute(
                    "INSERT INTO user_directory_public_rooms (room_id) VALUES ($1)"
                    " ON CONFLICT (room_id) DO NOTHING",
                    room_id,
                )
            else:
                await conn.execute("DELETE FROM user_directory_public_rooms WHERE room_id = $1", room_id)

    async def get_local_profile_txn(
        self, conn: Connection, user_id: str
    ) -> tuple[str | None, str | None] | None:
        row = await conn.fetchrow(
            "SELECT p.displayname, p.avatar_url FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
            " WHERE u.user_id = $1 AND NOT u.deactivated",
            user_id,
        )
        return (row[0], row[1]) if row is not None else None

    async def list_local_users_missing(self, limit: int = 10_000) -> list[DirectoryUser]:
        """Active local users without a directory row (created before the directory existed, or
        registered without logging in)."""
        rows = await self.db.fetch(
            "SELECT u.user_id, p.displayname, p.avatar_url FROM users u"
            " LEFT JOIN profiles p ON p.user_id = u.user_id"
            " WHERE NOT u.deactivated"
            " AND NOT EXISTS (SELECT 1 FROM user_directory d WHERE d.user_id = u.user_id) LIMIT $1",
            limit,
        )
        return [DirectoryUser(r[0], r[1], r[2]) for r in rows]

    # -- reads -------------------------------------------------------------------------------------

    async def search(self, query: DirectorySearch) -> list[DirectoryUser]:
        """Up to `limit + 1` users, best first (the caller reports `limited`)."""
        dialect = self.dialect
        args = SqlArgs()
        me = args.add(query.searcher)
        where = [f"d.user_id <> {me}"]
        for term in query.terms:
            in_name = dialect.contains("d.search_name", term, args)
            in_id = dialect.contains("d.search_id", term, args)
            where.append(f"({in_name} OR {in_id})")
        where.append(
            "NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = d.user_id AND (u.deactivated OR u.locked))"
        )
        if query.exclude_remote_users:
            where.append("d.is_local")
        if not query.search_all_users:
            where.append(
                "(EXISTS (SELECT 1 FROM room_memberships m"
                " JOIN user_directory_public_rooms p ON p.room_id = m.room_id"
                " WHERE m.user_id = d.user_id AND m.membership = 'join')"
                " OR EXISTS (SELECT 1 FROM room_memberships o"
                " JOIN room_memberships s ON s.room_id = o.room_id"
                f" WHERE o.user_id = d.user_id AND o.membership = 'join' AND s.user_id = {me}"
                " AND s.membership = 'join'))"
            )
        whole = " ".join(query.terms)
        exact, local_exact = args.add(whole), args.add("@" + whole + ":")
        prefix_id = args.add("@" + whole)
        rank = (
            f"CASE WHEN d.search_name = {exact} OR {dialect.starts_with('d.search_id', local_exact)} THEN 0"
            f" WHEN {dialect.starts_with('d.search_name', exact)}"
            f" OR {dialect.starts_with('d.search_id', prefix_id)} THEN 1"
            f" WHEN {dialect.contains('d.search_name', ' ' + whole, args)} THEN 2 ELSE 3 END"
        )
        order = ["rank"]
        if query.prefer_local_users:
            order.append("d.is_local DESC")
        order += [
            "(d.display_name IS NULL)",
            "(d.avatar_url IS NULL)",
            "d.search_name",
            "d.user_id",
        ]
        sql = (
            f"SELECT d.user_id, d.display_name, d.avatar_url, {rank} AS rank FROM user_directory d"
            f" WHERE {' AND '.join(where)} ORDER BY {', '.join(order)} LIMIT {args.add(query.limit + 1)}"
        )
        rows = await self.db.fetch(sql, *args.values)
        return [DirectoryUser(r[0], r[1], r[2]) for r in rows]
