"""Who is a server admin: Synapse's `GET/PUT /_synapse/admin/v1/users/{userId}/admin`.

Element asks this when it opens a user's profile (to offer admin actions); Synapse's rules are
kept: only local users can be admins, and an admin cannot demote themselves (the last admin doing
so by mistake would leave nobody able to undo it).
"""

from __future__ import annotations

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.requester import Requester
from homeserver.services.auth import AuthService
from homeserver.storage.stores.users import UserStore


class ServerAdminService:
    def __init__(self, users: UserStore, auth: AuthService, *, server_name: str) -> None:
        self.users = users
        self.auth = auth
        self.server_name = server_name

    def _local_user(self, user_id: str) -> str:
        ids.check_user_id(user_id)
        if ids.server_of(user_id) != self.server_name:
            raise MatrixError(400, "M_UNKNOWN", "Only local users can be admins of this homeserver")
        return user_id

    async def is_admin(self, user_id: str) -> bool:
        """False for a local user id nobody registered, as Synapse answers."""
        user = await self.users.get_user(self._local_user(user_id))
        return user is not None and user.is_admin

    async def set_admin(self, requester: Requester, user_id: str, admin: bool) -> None:
        self._local_user(user_id)
        if user_id == requester.user_id and not admin:
            raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself.")
        if not await self.users.set_admin(user_id, admin):
            raise MatrixError(404, "M_NOT_FOUND", "User not found")
        # Requesters are cached per access token with their admin flag.
        self.auth.invalidate_user(user_id)
