"""user_ips (every address and user agent a device was seen with) and devices.last_seen_*."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class ClientSeen:
    user_id: str
    device_id: str
    ip: str
    user_agent: str
    last_seen: int  # ms


class ClientIpStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def upsert_seen(self, rows: Iterable[ClientSeen]) -> None:
        """Write one batch in one transaction: the user_ips rows and each device's last-seen."""
        async with self.db.transaction() as conn:
            for row in rows:
                await conn.execute(
                    "INSERT INTO user_ips (user_id, device_id, ip, user_agent, last_seen)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, ip, user_agent)"
                    " DO UPDATE SET last_seen = excluded.last_seen",
                    row.user_id,
                    row.device_id,
                    row.ip,
                    row.user_agent,
                    row.last_seen,
                )
                await conn.execute(
                    "UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4, last_seen_user_agent = $5"
                    " WHERE user_id = $1 AND device_id = $2"
                    " AND (last_seen_ts IS NULL OR last_seen_ts <= $3)",
                    row.user_id,
                    row.device_id,
                    row.last_seen,
                    row.ip,
                    row.user_agent or None,
                )

    async def list_seen(self, user_id: str) -> list[ClientSeen]:
        rows = await self.db.fetch(
            "SELECT user_id, device_id, ip, user_agent, last_seen FROM user_ips"
            " WHERE user_id = $1 ORDER BY last_seen DESC",
            user_id,
        )
        return [ClientSeen(r[0], r[1], r[2], r[3], int(r[4])) for r in rows]
