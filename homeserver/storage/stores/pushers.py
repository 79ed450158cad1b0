"""pushers table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.core.json import dumps_str, loads
from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class Pusher:
    user_id: str
    app_id: str
    pushkey: str
    kind: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    device_id: str | None
    # Delivery state (schema 0029): when it was set (ms; `pushkey_ts` in notifications), the events
    # position delivered up to, since when delivery has been failing.
    created_ts: int = 0
    last_stream_ordering: int = 0
    failing_since: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.user_id, self.app_id, self.pushkey)


@dataclass(frozen=True, slots=True)
class Throttle:
    """An email pusher's throttle for one room: last digest time and the current interval."""

    last_sent_ts: int
    throttle_ms: int


_COLS = (
    "user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data,"
    " device_id"
)


_READ_COLS = _COLS + ", created_ts, last_stream_ordering, failing_since"


def _pusher(r: Any) -> Pusher:
    return Pusher(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], loads(r[8]), r[9],
        int(r[10]), int(r[11] or 0), None if r[12] is None else int(r[12]),
    )  # fmt: skip


class PusherStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_for_user(self, user_id: str) -> list[Pusher]:
        rows = await self.db.fetch(
            f"SELECT {_READ_COLS} FROM pushers WHERE user_id = $1 ORDER BY app_id, pushkey", user_id
        )
        return [_pusher(r) for r in rows]

    async def list_all(self) -> list[Pusher]:
        rows = await self.db.fetch(f"SELECT {_READ_COLS} FROM pushers ORDER BY user_id, app_id, pushkey")
        return [_pusher(r) for r in rows]

    async def get(self, user_id: str, app_id: str, pushkey: str) -> Pusher | None:
        row = await self.db.fetchrow(
            f"SELECT {_READ_COLS} FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
            user_id,
            app_id,
            pushkey,
        )
        return _pusher(row) if row is not None else None

    async def upsert(self, pusher: Pusher, now: int, *, append: bool, position: int = 0) -> None:
        """Add or replace a pusher; it delivers notifications after events stream `position`
        (as Synapse, also when an existing pusher is set again)."""
        async with self.db.transaction() as conn:
            if not append:
                # The same app+pushkey belongs to one user only (a device changed hands).
                await conn.execute(
                    "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
                    pusher.app_id,
                    pusher.pushkey,
                    pusher.user_id,
                )
            await conn.execute(
                f"INSERT INTO pushers ({_COLS}, created_ts, last_stream_ordering)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind,"
                " app_display_name = excluded.app_display_name,"
                " device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag,"
                " lang = excluded.lang, data = excluded.data, device_id = excluded.device_id,"
                " created_ts = excluded.created_ts, last_stream_ordering = excluded.last_stream_ordering,"
                " failing_since = NULL",
                pusher.user_id,
                pusher.app_id,
                pusher.pushkey,
                pusher.kind,
                pusher.app_display_name,
                pusher.device_display_name,
                pusher.profile_tag,
                pusher.lang,
                dumps_str(pusher.data),
                pusher.device_id,
                now,
                position,
            )

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> bool:
        """Remove a pusher and its throttles; False when there was none."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3 RETURNING user_id",
                user_id,
                app_id,
                pushkey,
            )
            await conn.execute(
                "DELETE FROM pusher_throttle WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
                user_id,
                app_id,
                pushkey,
            )
        return row is not None

    async def delete_for_devices(self, user_id: str, device_ids: list[str]) -> list[Pusher]:
        """Remove the pushers the devices created; returns them (delivery stops for each)."""
        removed: list[Pusher] = []
        for pusher in await self.list_for_user(user_id):
            if pusher.device_id is not None and pusher.device_id in device_ids:
                await self.delete(pusher.user_id, pusher.app_id, pusher.pushkey)
                removed.append(pusher)
        return removed

    # -- delivery state --------------------------------------------------------------------------

    async def update_position(
        self, user_id: str, app_id: str, pushkey: str, position: int, success_ts: int
    ) -> bool:
        """Delivered up to `position`: store it, clear the failure. False when the pusher is gone
        (deleted meanwhile: the caller stops)."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "UPDATE pushers SET last_stream_ordering = $4, last_success_ts = $5, failing_since = NULL"
                " WHERE user_id = $1 AND app_id = $2 AND pushkey = $3 RETURNING user_id",
                user_id,
                app_id,
                pushkey,
                position,
                success_ts,
            )
        return row is not None

    async def set_failing_since(self, user_id: str, app_id: str, pushkey: str, ts: int | None) -> None:
        await self.db.execute(
            "UPDATE pushers SET failing_since = $4 WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
            user_id,
            app_id,
            pushkey,
            ts,
        )

    async def threepid_owner(self, medium: str, address: str) -> str | None:
        row = await self.db.fetchrow(
            "SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2", medium, address
        )
        return str(row[0]) if row is not None else None

    async def get_throttles(self, user_id: str, app_id: str, pushkey: str) -> dict[str, Throttle]:
        rows = await self.db.fetch(
            "SELECT room_id, last_sent_ts, throttle_ms FROM pusher_throttle"
            " WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
            user_id,
            app_id,
            pushkey,
        )
        return {r[0]: Throttle(int(r[1]), int(r[2])) for r in rows}

    async def set_throttle(
        self, user_id: str, app_id: str, pushkey: str, room_id: str, throttle: Throttle
    ) -> None:
        await self.db.execute(
            "INSERT INTO pusher_throttle (user_id, app_id, pushkey, room_id, last_sent_ts, throttle_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, app_id, pushkey, room_id)"
            " DO UPDATE SET last_sent_ts = excluded.last_sent_ts, throttle_ms = excluded.throttle_ms",
            user_id,
            app_id,
            pushkey,
            room_id,
            throttle.last_sent_ts,
            throttle.throttle_ms,
        )
