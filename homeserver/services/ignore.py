"""Ignoring users (client-server API "Ignoring Users"): `m.ignored_user_list` global account data.

The ignore list of every user who syncs is cached in memory (an empty frozenset for most users), and
kept current by an account-data write hook, so the filters cost a dict lookup when nobody is
ignored. What is hidden from the ignoring user, as the spec and Synapse do:
- non-state events sent by ignored users, wherever events pass `VisibilityService.filter_events`
  (/sync timelines, /messages, /context, /event...); state events stay visible;
- invites sent by ignored users, in /sync (`IgnoreExtension` in sync/ephemeral.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from homeserver.metrics.caches import register_cache
from homeserver.services.account_data import AccountDataService

IGNORED_USER_LIST = "m.ignored_user_list"
EMPTY: frozenset[str] = frozenset()


def parse_ignored(content: Any) -> frozenset[str]:
    users = content.get("ignored_users") if isinstance(content, dict) else None
    if not isinstance(users, dict) or not users:
        return EMPTY
    return frozenset(u for u in users if isinstance(u, str))


class IgnoreService:
    MAX_USERS = 200_000

    def __init__(self, account_data: AccountDataService) -> None:
        self.account_data = account_data
        self._cache: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._metric = register_cache("ignored_users", self, lambda s: len(s._cache), self.MAX_USERS)

    async def ignored_by(self, user_id: str) -> frozenset[str]:
        """The users `user_id` ignores (usually the shared empty set)."""
        found = self._cache.get(user_id)
        if found is not None:
            self._metric.hits += 1
            return found
        self._metric.misses += 1
        content = await self.account_data.get(user_id, "", IGNORED_USER_LIST)
        # A write while loading has already put the newer list in the cache: keep that one.
        found = self._cache.setdefault(user_id, parse_ignored(content))
        if len(self._cache) > self.MAX_USERS:
            self._cache.popitem(last=False)
            self._metric.evicted_size += 1
        return found

    def forget(self, user_id: str) -> None:
        """Another process changed the list (scale-out): read it again when needed."""
        self._cache.pop(user_id, None)

    def on_account_data(self, user_id: str, room_id: str, type: str, content: dict[str, Any]) -> None:
        """Account-data write hook."""
        if type == IGNORED_USER_LIST and room_id == "":
            self._cache[user_id] = parse_ignored(content)
            self._cache.move_to_end(user_id)
