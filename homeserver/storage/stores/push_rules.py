"""push_rules / push_rule_settings: what users changed of their push rules.

The server-default rules are code (`homeserver/push/default_rules.py`); `push_rules` holds
user-defined rules and `push_rule_settings` the enabled/actions a user set on default rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from homeserver.core.json import dumps_str, loads
from homeserver.storage.database import Connection, Database

# Bound on the number of user ids in one `IN (...)` list.
_BATCH = 500


@dataclass(frozen=True, slots=True)
class PushRuleRow:
    kind: str
    rule_id: str
    priority: int
    conditions: list[dict[str, Any]] | None
    pattern: str | None
    actions: list[Any]
    enabled: bool


@dataclass(frozen=True, slots=True)
class PushRuleSettingRow:
    kind: str
    rule_id: str
    enabled: bool | None
    actions: list[Any] | None


@dataclass(slots=True)
class UserPushRuleRows:
    rules: list[PushRuleRow] = field(default_factory=list)
    settings: list[PushRuleSettingRow] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rules and not self.settings


_RULE_COLUMNS = "kind, rule_id, priority, conditions, pattern, actions, enabled"
_SETTING_COLUMNS = "kind, rule_id, enabled, actions"


def _rule(row: Any) -> PushRuleRow:
    return PushRuleRow(
        kind=row["kind"],
        rule_id=row["rule_id"],
        priority=int(row["priority"]),
        conditions=loads(row["conditions"]) if row["conditions"] is not None else None,
        pattern=row["pattern"],
        actions=loads(row["actions"]),
        enabled=bool(row["enabled"]),
    )


def _setting(row: Any) -> PushRuleSettingRow:
    return PushRuleSettingRow(
        kind=row["kind"],
        rule_id=row["rule_id"],
        enabled=None if row["enabled"] is None else bool(row["enabled"]),
        actions=loads(row["actions"]) if row["actions"] is not None else None,
    )


class PushRuleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_for_user(self, user_id: str, conn: Connection | None = None) -> UserPushRuleRows:
        c = conn or self.db
        rules = await c.fetch(f"SELECT {_RULE_COLUMNS} FROM push_rules WHERE user_id = $1", user_id)
        settings = await c.fetch(
            f"SELECT {_SETTING_COLUMNS} FROM push_rule_settings WHERE user_id = $1", user_id
        )
        return UserPushRuleRows([_rule(r) for r in rules], [_setting(r) for r in settings])

    async def get_for_users(self, user_ids: Iterable[str]) -> dict[str, UserPushRuleRows]:
        """Rows of every given user that changed anything (others are absent)."""
        ids = list(dict.fromkeys(user_ids))
        out: dict[str, UserPushRuleRows] = {}
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            marks = ", ".join(f"${i + 1}" for i in range(len(batch)))
            for r in await self.db.fetch(
                f"SELECT user_id, {_RULE_COLUMNS} FROM push_rules WHERE user_id IN ({marks})", *batch
            ):
                out.setdefault(r["user_id"], UserPushRuleRows()).rules.append(_rule(r))
            for r in await self.db.fetch(
                f"SELECT user_id, {_SETTING_COLUMNS} FROM push_rule_settings WHERE user_id IN ({marks})",
                *batch,
            ):
                out.setdefault(r["user_id"], UserPushRuleRows()).settings.append(_setting(r))
        return out

    # -- writes (inside the caller's transaction) ----------------------------------------------

    async def upsert_rule_txn(
        self,
        conn: Connection,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        priority: int,
        conditions: list[dict[str, Any]] | None,
        pattern: str | None,
        actions: list[Any],
    ) -> None:
        """Insert a new rule (enabled) or replace an existing one's definition (keeps `enabled`)."""
        await conn.execute(
            "INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern, actions, enabled)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE)"
            " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET priority = excluded.priority,"
            " conditions = excluded.conditions, pattern = excluded.pattern, actions = excluded.actions",
            user_id,
            kind,
            rule_id,
            priority,
            dumps_str(conditions) if conditions is not None else None,
            pattern,
            dumps_str(actions),
        )

    async def set_priorities_txn(
        self, conn: Connection, user_id: str, kind: str, priorities: dict[str, int]
    ) -> None:
        if priorities:
            await conn.executemany(
                "UPDATE push_rules SET priority = $4 WHERE user_id = $1 AND kind = $2 AND rule_id = $3",
                [(user_id, kind, rule_id, p) for rule_id, p in priorities.items()],
            )

    async def delete_rule_txn(self, conn: Connection, user_id: str, kind: str, rule_id: str) -> None:
        await conn.execute(
            "DELETE FROM push_rules WHERE user_id = $1 AND kind = $2 AND rule_id = $3", user_id, kind, rule_id
        )

    async def set_rule_enabled_txn(
        self, conn: Connection, user_id: str, kind: str, rule_id: str, enabled: bool
    ) -> None:
        await conn.execute(
            "UPDATE push_rules SET enabled = $4 WHERE user_id = $1 AND kind = $2 AND rule_id = $3",
            user_id,
            kind,
            rule_id,
            enabled,
        )

    async def set_rule_actions_txn(
        self, conn: Connection, user_id: str, kind: str, rule_id: str, actions: list[Any]
    ) -> None:
        await conn.execute(
            "UPDATE push_rules SET actions = $4 WHERE user_id = $1 AND kind = $2 AND rule_id = $3",
            user_id,
            kind,
            rule_id,
            dumps_str(actions),
        )

    async def set_default_enabled_txn(
        self, conn: Connection, user_id: str, kind: str, rule_id: str, enabled: bool
    ) -> None:
        await conn.execute(
            "INSERT INTO push_rule_settings (user_id, kind, rule_id, enabled, actions)"
            " VALUES ($1, $2, $3, $4, NULL)"
            " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET enabled = excluded.enabled",
            user_id,
            kind,
            rule_id,
            enabled,
        )

    async def set_default_actions_txn(
        self, conn: Connection, user_id: str, kind: str, rule_id: str, actions: list[Any]
    ) -> None:
        await conn.execute(
            "INSERT INTO push_rule_settings (user_id, kind, rule_id, enabled, actions)"
            " VALUES ($1, $2, $3, NULL, $4)"
            " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET actions = excluded.actions",
            user_id,
            kind,
            rule_id,
            dumps_str(actions),
        )
