"""The user directory (client-server API "User Directory", users.yaml): `POST /user_directory/search`.

Who can be found (Synapse's `user_directory` semantics, config section `user_directory`):
users sharing a joined room with the searcher, and users joined to rooms with a `public` join rule
or `world_readable` history; with `search_all_users`, every user the server knows. Matching is a
case-insensitive substring of the display name or the user id, in any script ("김" and "철수" both
find "김철수"); exact and prefix matches rank first, then users with a display name and avatar.

The directory table is kept current by:
- registration and logins (`accounts.device_created_hooks`) and a backfill at startup, for local
  users (registration without a login is picked up when the user joins a room, or at restart);
- profile changes (`profiles.changed_hooks`): the global profile of local users;
- the persister batch hook: member events of remote users (their display name and avatar) and of
  local users (a row if missing), and join rule / history visibility changes (the public-room set);
- deactivation (`accounts.deactivated_hooks`): the row is removed.
Who shares a room with whom is read live from `room_memberships`, so it never lags.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from homeserver.events import constants as c
from homeserver.persist.persister import PersistedEvent
from homeserver.storage.database import Connection
from homeserver.storage.search_dialect import parse_terms
from homeserver.storage.stores.user_directory import DirectorySearch, UserDirectoryStore

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 10
MAX_LIMIT = 50


def is_public_room(join_rule: Any, history_visibility: Any) -> bool:
    return join_rule == c.PUBLIC or history_visibility == "world_readable"


class UserDirectoryService:
    def __init__(
        self,
        store: UserDirectoryStore,
        *,
        server_name: str,
        enabled: bool = True,
        search_all_users: bool = False,
        prefer_local_users: bool = False,
        exclude_remote_users: bool = False,
    ) -> None:
        self.store = store
        self.suffix = ":" + server_name
        self.enabled = enabled
        self.search_all_users = search_all_users
        self.prefer_local_users = prefer_local_users
        self.exclude_remote_users = exclude_remote_users

    def _is_local(self, user_id: str) -> bool:
        return user_id.endswith(self.suffix)

    async def start(self) -> None:
        """Add local users that have no directory row yet (existing databases, registrations that
        did not log in)."""
        batch = 10_000
        while True:
            missing = await self.store.list_local_users_missing(batch)
            if missing:
                rows = [(u.user_id, u.display_name, u.avatar_url, True) for u in missing]
                async with self.store.db.transaction() as conn:
                    await self.store.upsert_txn(conn, rows, overwrite=False)
                logger.info("user directory: added %d local user(s)", len(rows))
            if len(missing) < batch:
                return

    # -- hooks ---------------------------------------------------------------------------------------

    async def on_profile_changed(self, user_id: str) -> None:
        async with self.store.db.transaction() as conn:
            profile = await self.store.get_local_profile_txn(conn, user_id)
            if profile is not None:
                await self.store.upsert_txn(conn, [(user_id, profile[0], profile[1], True)])

    async def on_deactivated(self, user_id: str) -> None:
        await self.store.delete_user(user_id)

    async def on_batch_txn(self, conn: Connection, persisted: Sequence[PersistedEvent]) -> None:
        """Persister batch hook: remote members' profiles, local members' rows, public rooms."""
        remote: dict[str, tuple[str, str | None, str | None, bool]] = {}
        local: list[str] = []
        public: dict[str, bool] = {}
        for p in persisted:
            event = p.event
            if event.state_key is None:
                continue
            if event.type == c.MEMBER:
                if event.content.get("membership") != c.JOIN:
                    continue
                user_id = event.state_key
                if self._is_local(user_id):
                    local.append(user_id)
                else:
                    name, avatar = event.content.get("displayname"), event.content.get("avatar_url")
                    remote[user_id] = (
                        user_id,
                        name if isinstance(name, str) else None,
                        avatar if isinstance(avatar, str) else None,
                        False,
                    )
            elif event.type in (c.JOIN_RULES, c.HISTORY_VISIBILITY) and event.state_key == "":
                before = p.state_before
                join_rule = before.content_of(c.JOIN_RULES).get("join_rule")
                visibility = before.content_of(c.HISTORY_VISIBILITY).get("history_visibility")
                if event.type == c.JOIN_RULES:
                    join_rule = event.content.get("join_rule")
                else:
                    visibility = event.content.get("history_visibility")
                public[event.room_id] = is_public_room(join_rule, visibility)
        if remote:
            await self.store.upsert_txn(conn, list(remote.values()))
        for user_id in dict.fromkeys(local):
            profile = await self.store.get_local_profile_txn(conn, user_id)
            if profile is not None:
                await self.store.upsert_txn(conn, [(user_id, profile[0], profile[1], True)], overwrite=False)
        if public:
            await self.store.set_public_rooms_txn(conn, list(public.items()))

    # -- POST /user_directory/search -----------------------------------------------------------------

    async def search(self, searcher: str, search_term: str, limit: int | None) -> dict[str, Any]:
        limit = DEFAULT_LIMIT if limit is None else max(0, min(limit, MAX_LIMIT))
        terms = tuple(t.text for t in parse_terms(search_term))
        if not self.enabled or not terms or limit == 0:
            return {"limited": False, "results": []}
        found = await self.store.search(
            DirectorySearch(
                searcher,
                terms,
                limit,
                search_all_users=self.search_all_users,
                exclude_remote_users=self.exclude_remote_users,
                prefer_local_users=self.prefer_local_users,
            )
        )
        results = []
        for user in found[:limit]:
            entry: dict[str, Any] = {"user_id": user.user_id}
            if user.display_name is not None:
                entry["display_name"] = user.display_name
            if user.avatar_url is not None:
                entry["avatar_url"] = user.avatar_url
            results.append(entry)
        return {"limited": len(found) > limit, "results": results}
