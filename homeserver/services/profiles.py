"""Profile changes; rooms hook in to send updated member events."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import not_found
from homeserver.storage.stores.users import Profile, UserStore

logger = logging.getLogger(__name__)

ProfileHook = Callable[[str], Awaitable[None]]
# Looks a remote user's profile up over federation (federation/queries.py).
RemoteProfileLookup = Callable[[str], Awaitable[dict[str, Any]]]


class ProfileService:
    def __init__(self, users: UserStore, server_name: str | None = None) -> None:
        self.users = users
        self.server_name = server_name
        self.changed_hooks: list[ProfileHook] = []
        self.remote_lookup: RemoteProfileLookup | None = None
        # Asks appservices about users in their namespaces that do not exist yet (may create them).
        self.unknown_user_query: Callable[[str], Awaitable[bool]] | None = None

    async def get_profile(self, user_id: str) -> Profile:
        if self.remote_lookup is not None and self.server_name is not None:
            if ids.server_of(user_id) != self.server_name:
                remote = await self.remote_lookup(user_id)
                return Profile(user_id, remote.get("displayname"), remote.get("avatar_url"))
        profile = await self.users.get_profile(user_id)
        if profile is None and self.unknown_user_query is not None and await self.unknown_user_query(user_id):
            profile = await self.users.get_profile(user_id)
        if profile is None:
            raise not_found("Profile was not found")
        return profile

    async def set_displayname(self, user_id: str, displayname: str | None) -> None:
        if await self.users.get_profile(user_id) is None:
            raise not_found("Profile was not found")
        await self.users.set_displayname(user_id, displayname)
        await self._changed(user_id)

    async def set_avatar_url(self, user_id: str, avatar_url: str | None) -> None:
        if await self.users.get_profile(user_id) is None:
            raise not_found("Profile was not found")
        await self.users.set_avatar_url(user_id, avatar_url)
        await self._changed(user_id)

    async def notify_changed(self, user_id: str) -> None:
        """Run the hooks after a profile was changed elsewhere (the admin API's user update)."""
        await self._changed(user_id)

    async def _changed(self, user_id: str) -> None:
        for hook in self.changed_hooks:
            try:
                await hook(user_id)
            except Exception:
                logger.exception("profile hook failed for %s", user_id)
