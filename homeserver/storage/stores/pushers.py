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


_COLS = (
    "user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data,"
    " device_id"
)


def _pusher(r: Any) -> Pusher:
    return Pusher(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], loads(r[8]), r[9])


class PusherStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_for_user(self, user_id: str) -> list[Pusher]:
        rows = await self.db.fetch(
            f"SELECT {_COLS} FROM pushers WHERE user_id = $1 ORDER BY app_id, pushkey", user_id
        )
        return [_pusher(r) for r in rows]

    async def upsert(self, pusher: Pusher, now: int, *, append: bool) -> None:
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
                f"INSERT INTO pushers ({_COLS}, created_ts)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind,"
                " app_display_name = excluded.app_display_name,"
                " device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag,"
                " lang = excluded.lang, data = excluded.data, device_id = excluded.device_id",
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
            )

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> None:
        await self.db.execute(
            "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
            user_id,
            app_id,
            pushkey,
        )

    async def delete_for_devices(self, user_id: str, device_ids: list[str]) -> None:
        for device_id in device_ids:
            await self.db.execute(
                "DELETE FROM pushers WHERE user_id = $1 AND device_id = $2", user_id, device_id
            )
