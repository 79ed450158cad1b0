"""Push rules per user: the effective rule set (server defaults merged with what the user
changed), the client API's reads and writes, and compiled evaluators for the persister.

Every change commits, invalidates the user's cache entry and then writes the whole ruleset as
`m.push_rules` global account data, which advances the account_data stream and wakes the user's
`/sync` (clients such as Element read push rules from there).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from homeserver.core.errors import invalid_param, not_found
from homeserver.metrics.caches import register_cache
from homeserver.push.evaluator import PushRuleEvaluator, default_evaluator
from homeserver.push.model import PushRule
from homeserver.push.rules import (
    check_actions,
    check_kind,
    check_new_rule_id,
    effective_rules,
    find_rule,
    is_default_rule,
    parse_rule_body,
    place_rule,
    priorities_for,
    rule_for_client,
    ruleset_for_client,
)
from homeserver.services.account_data import AccountDataService
from homeserver.storage.database import Database
from homeserver.storage.stores.push_rules import PushRuleStore, UserPushRuleRows

PUSH_RULES_TYPE = "m.push_rules"


@dataclass(slots=True)
class _Entry:
    rows: UserPushRuleRows
    rules: list[PushRule]
    evaluator: PushRuleEvaluator | None = None
    client: dict[str, list[dict[str, Any]]] | None = field(default=None)


class PushRulesService:
    def __init__(
        self,
        db: Database,
        store: PushRuleStore,
        account_data: AccountDataService,
        *,
        cache_size: int = 50_000,
    ) -> None:
        self.db = db
        self.store = store
        self.account_data = account_data
        self.cache_size = cache_size
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._metric = register_cache("get_push_rules_for_user", self, lambda s: len(s._cache), cache_size)
        # Bumped by every invalidation: a load that raced with a change is used but not cached.
        self._epoch = 0
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    # -- cache ---------------------------------------------------------------------------------

    def invalidate(self, user_id: str) -> None:
        """Forget a user's rules (after a change here, or announced by another process)."""
        self._epoch += 1
        self._cache.pop(user_id, None)

    def _remember(self, user_id: str, rows: UserPushRuleRows, epoch: int) -> _Entry:
        entry = _Entry(rows, effective_rules(rows.rules, rows.settings))
        if epoch == self._epoch:
            self._cache[user_id] = entry
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
                self._metric.evicted_size += 1
        return entry

    async def _entry(self, user_id: str) -> _Entry:
        entry = self._cache.get(user_id)
        if entry is not None:
            self._metric.hits += 1
            self._cache.move_to_end(user_id)
            return entry
        self._metric.misses += 1
        epoch = self._epoch
        return self._remember(user_id, await self.store.get_for_user(user_id), epoch)

    @asynccontextmanager
    async def _user_lock(self, user_id: str) -> AsyncIterator[None]:
        """Serialises one user's writes (rule ordering is read-modify-write)."""
        lock, users = self._locks.setdefault(user_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[user_id]

    # -- reads ---------------------------------------------------------------------------------

    async def rules(self, user_id: str) -> list[PushRule]:
        """The effective rules in evaluation order (treat as read-only)."""
        return (await self._entry(user_id)).rules

    async def ruleset(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The spec's global Ruleset (shared: treat as read-only)."""
        entry = await self._entry(user_id)
        if entry.client is None:
            entry.client = ruleset_for_client(entry.rules, user_id)
        return entry.client

    async def account_data_content(self, user_id: str) -> dict[str, Any]:
        """The content of the user's `m.push_rules` account data event."""
        return {"global": await self.ruleset(user_id)}

    async def rules_of_kind(self, user_id: str, kind: str) -> list[dict[str, Any]]:
        check_kind(kind)
        return (await self.ruleset(user_id))[kind]

    async def _find(self, user_id: str, kind: str, rule_id: str) -> PushRule:
        check_kind(kind)
        rule = find_rule((await self._entry(user_id)).rules, kind, rule_id)
        if rule is None:
            raise not_found("The push rule was not found.")
        return rule

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
        return rule_for_client(await self._find(user_id, kind, rule_id), user_id)

    async def get_enabled(self, user_id: str, kind: str, rule_id: str) -> bool:
        return (await self._find(user_id, kind, rule_id)).enabled

    async def get_actions(self, user_id: str, kind: str, rule_id: str) -> list[Any]:
        return (await self._find(user_id, kind, rule_id)).actions

    # -- evaluators (for the persister) --------------------------------------------------------

    def _evaluator(self, entry: _Entry) -> PushRuleEvaluator:
        if entry.evaluator is None:
            entry.evaluator = default_evaluator() if entry.rows.empty else PushRuleEvaluator(entry.rules)
        return entry.evaluator

    async def evaluator_for(self, user_id: str) -> PushRuleEvaluator:
        return self._evaluator(await self._entry(user_id))

    async def evaluators_for(self, user_ids: Iterable[str]) -> dict[str, PushRuleEvaluator]:
        """Evaluators of many users (a room's members), loading the uncached ones in batches."""
        out: dict[str, PushRuleEvaluator] = {}
        missing = []
        for user_id in user_ids:
            entry = self._cache.get(user_id)
            if entry is None:
                missing.append(user_id)
            else:
                out[user_id] = self._evaluator(entry)
        self._metric.misses += len(missing)
        self._metric.hits += len(out)
        if missing:
            epoch = self._epoch
            loaded = await self.store.get_for_users(missing)
            for user_id in missing:
                entry = self._cache.get(user_id)  # a concurrent load may have filled it
                if entry is None:
                    entry = self._remember(user_id, loaded.get(user_id) or UserPushRuleRows(), epoch)
                out[user_id] = self._evaluator(entry)
        return out

    # -- writes --------------------------------------------------------------------------------

    async def _changed(self, user_id: str) -> None:
        self.invalidate(user_id)
        await self.account_data.put(
            user_id, "", PUSH_RULES_TYPE, await self.account_data_content(user_id), internal=True
        )

    async def set_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        body: dict[str, Any],
        *,
        before: str | None = None,
        after: str | None = None,
    ) -> None:
        """Create or replace a user-defined rule (spec `setPushRule`)."""
        check_kind(kind)
        check_new_rule_id(kind, rule_id)
        conditions, pattern, actions = parse_rule_body(kind, body)
        async with self._user_lock(user_id):
            async with self.db.transaction() as conn:
                rows = await self.store.get_for_user(user_id, conn)
                same_kind = sorted(
                    (r for r in rows.rules if r.kind == kind), key=lambda r: (-r.priority, r.rule_id)
                )
                current = {r.rule_id: r.priority for r in same_kind}
                order = place_rule([r.rule_id for r in same_kind], rule_id, before, after)
                priorities = priorities_for(order)
                await self.store.upsert_rule_txn(
                    conn,
                    user_id,
                    kind,
                    rule_id,
                    priority=priorities[rule_id],
                    conditions=conditions,
                    pattern=pattern,
                    actions=actions,
                )
                moved = {r: p for r, p in priorities.items() if r != rule_id and current.get(r) != p}
                await self.store.set_priorities_txn(conn, user_id, kind, moved)
            await self._changed(user_id)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        check_kind(kind)
        if is_default_rule(kind, rule_id):
            raise invalid_param("Server-default rules cannot be deleted")
        async with self._user_lock(user_id):
            async with self.db.transaction() as conn:
                rows = await self.store.get_for_user(user_id, conn)
                if not any(r.kind == kind and r.rule_id == rule_id for r in rows.rules):
                    raise not_found("The push rule was not found.")
                await self.store.delete_rule_txn(conn, user_id, kind, rule_id)
            await self._changed(user_id)

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: Any) -> None:
        check_kind(kind)
        if not isinstance(enabled, bool):
            raise invalid_param("'enabled' must be a boolean")
        await self._set_attr(user_id, kind, rule_id, enabled=enabled)

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: Any) -> None:
        check_kind(kind)
        await self._set_attr(user_id, kind, rule_id, actions=check_actions(actions))

    async def _set_attr(
        self, user_id: str, kind: str, rule_id: str, *, enabled: bool | None = None, actions: Any = None
    ) -> None:
        async with self._user_lock(user_id):
            async with self.db.transaction() as conn:
                if is_default_rule(kind, rule_id):
                    if enabled is not None:
                        await self.store.set_default_enabled_txn(conn, user_id, kind, rule_id, enabled)
                    else:
                        await self.store.set_default_actions_txn(conn, user_id, kind, rule_id, actions)
                else:
                    rows = await self.store.get_for_user(user_id, conn)
                    if not any(r.kind == kind and r.rule_id == rule_id for r in rows.rules):
                        raise not_found("The push rule was not found.")
                    if enabled is not None:
                        await self.store.set_rule_enabled_txn(conn, user_id, kind, rule_id, enabled)
                    else:
                        await self.store.set_rule_actions_txn(conn, user_id, kind, rule_id, actions)
            await self._changed(user_id)
