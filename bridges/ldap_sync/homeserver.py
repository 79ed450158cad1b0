"""The homeserver as the sync sees it: every call is made with the appservice's `as_token` acting
as its bot (the registration's `sender_localpart`), which must be a server admin. The bot creates
and owns the spaces and rooms; accounts, joins and deactivations go through Synapse's admin API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from appservices import ClientApi, MatrixRequestError

V3 = "/_matrix/client/v3"
ADMIN = "/_synapse/admin"
# Written into each room's create event: the room can be found again from the server alone
# (a crash between createRoom and recording the mapping leaves no orphan).
KEY_FIELD = "org.matrix.ldap_sync.key"


class HomeserverError(Exception):
    pass


def _q(value: str) -> str:
    return quote(value, safe="")


@dataclass
class UserState:
    exists: bool
    displayname: str | None = None
    threepids: tuple[tuple[str, str], ...] = ()  # (medium, address)
    external_ids: frozenset[tuple[str, str]] = frozenset()
    deactivated: bool = False


@dataclass
class RoomState:
    room_id: str
    key: str | None = None
    is_space: bool = False
    name: str | None = None
    members: dict[str, str] = field(default_factory=dict)  # user id -> membership
    power_levels: dict[str, Any] = field(default_factory=dict)
    children: set[str] = field(default_factory=set)  # room ids with a non-empty m.space.child
    parents: set[str] = field(default_factory=set)

    @property
    def levels(self) -> dict[str, int]:
        users = self.power_levels.get("users")
        return {k: int(v) for k, v in users.items()} if isinstance(users, dict) else {}


def room_state_from_events(room_id: str, events: list[dict[str, Any]]) -> RoomState:
    state = RoomState(room_id)
    for ev in events:
        etype, key, content = ev.get("type"), ev.get("state_key"), ev.get("content") or {}
        if etype == "m.room.create":
            state.key = content.get(KEY_FIELD)
            state.is_space = content.get("type") == "m.space"
        elif etype == "m.room.name":
            state.name = content.get("name")
        elif etype == "m.room.member" and isinstance(key, str):
            state.members[key] = str(content.get("membership", "leave"))
        elif etype == "m.room.power_levels":
            state.power_levels = dict(content)
        elif etype == "m.space.child" and content.get("via"):
            state.children.add(str(key))
        elif etype == "m.space.parent" and content.get("via"):
            state.parents.add(str(key))
    return state


class Homeserver:
    def __init__(
        self, url: str, as_token: str, bot_id: str, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.api = ClientApi(self.url, as_token, session)
        self.bot_id = bot_id
        self.reader: ClientApi | None = None

    async def close(self) -> None:
        await self.api.close()

    def read_with(self, admin_access_token: str) -> None:
        """Admin reads with another admin's token: a dry run before the bot is an admin (making it
        one would be a change)."""
        self.reader = ClientApi(self.url, admin_access_token, self.api.session)

    async def _bot(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if self.reader is not None and method == "GET" and path.startswith(ADMIN):
            return await self.reader.request(method, path, body, **kw)
        return await self.api.request(method, path, body, user_id=self.bot_id, **kw)

    # -- the bot's admin rights ------------------------------------------------------------

    async def bot_is_admin(self) -> bool:
        try:
            await self._bot("GET", f"{ADMIN}/v1/users/{_q(self.bot_id)}/admin")
        except MatrixRequestError as exc:
            if exc.status == 403:
                return False
            raise
        return True

    async def ensure_bot_admin(self, admin_access_token: str | None) -> None:
        if await self.bot_is_admin():
            return
        if admin_access_token is None:
            raise HomeserverError(
                f"the sync's bot {self.bot_id} is not a server admin: set homeserver.admin_access_token "
                f'once, or run PUT /_synapse/admin/v1/users/{self.bot_id}/admin {{"admin": true}}'
            )
        headers = {"Authorization": f"Bearer {admin_access_token}"}
        async with self.api.session.put(
            f"{self.url}{ADMIN}/v1/users/{_q(self.bot_id)}/admin", json={"admin": True}, headers=headers
        ) as resp:
            if resp.status != 200:
                raise HomeserverError(
                    f"making {self.bot_id} a server admin with homeserver.admin_access_token failed: "
                    f"{resp.status} {await resp.text()}"
                )

    # -- accounts --------------------------------------------------------------------------

    async def get_user(self, user_id: str) -> UserState:
        try:
            body = await self._bot("GET", f"{ADMIN}/v2/users/{_q(user_id)}")
        except MatrixRequestError as exc:
            if exc.status == 404:
                return UserState(exists=False)
            raise
        return UserState(
            exists=True,
            displayname=body.get("displayname"),
            threepids=tuple((str(t["medium"]), str(t["address"])) for t in body.get("threepids") or []),
            external_ids=frozenset(
                (e["auth_provider"], e["external_id"]) for e in body.get("external_ids") or []
            ),
            deactivated=bool(body.get("deactivated")),
        )

    async def put_user(self, user_id: str, body: dict[str, Any]) -> None:
        await self._bot("PUT", f"{ADMIN}/v2/users/{_q(user_id)}", body)

    async def deactivate(self, user_id: str, erase: bool) -> None:
        await self._bot("POST", f"{ADMIN}/v1/deactivate/{_q(user_id)}", {"erase": erase})

    async def user_joined_rooms(self, user_id: str) -> list[str]:
        body = await self._bot("GET", f"{ADMIN}/v1/users/{_q(user_id)}/joined_rooms")
        return [str(r) for r in body.get("joined_rooms", [])]

    # -- rooms -----------------------------------------------------------------------------

    async def room_state(self, room_id: str) -> RoomState | None:
        """The room's current state through the admin API, None when the server does not know it."""
        try:
            body = await self._bot("GET", f"{ADMIN}/v1/rooms/{_q(room_id)}/state")
        except MatrixRequestError as exc:
            if exc.status in (400, 404):
                return None
            raise
        return room_state_from_events(room_id, list(body.get("state", [])))

    async def bot_rooms(self) -> list[str]:
        body = await self._bot("GET", f"{V3}/joined_rooms")
        return [str(r) for r in body.get("joined_rooms", [])]

    async def create_room(self, key: str, name: str, is_space: bool) -> str:
        creation: dict[str, Any] = {KEY_FIELD: key}
        if is_space:
            creation["type"] = "m.space"
        body = {
            "name": name,
            "preset": "private_chat",
            "visibility": "private",
            "creation_content": creation,
        }
        return str((await self._bot("POST", f"{V3}/createRoom", body))["room_id"])

    async def set_state(self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]) -> None:
        path = f"{V3}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        await self._bot("PUT", path, content)

    async def force_join(self, room_id: str, user_id: str) -> None:
        """Synapse's admin join: the bot (in the room, an admin) invites the user and joins them."""
        await self._bot("POST", f"{ADMIN}/v1/join/{_q(room_id)}", {"user_id": user_id})

    async def kick(self, room_id: str, user_id: str, reason: str) -> None:
        await self._bot("POST", f"{V3}/rooms/{_q(room_id)}/kick", {"user_id": user_id, "reason": reason})

    async def make_room_admin(self, room_id: str, user_id: str) -> None:
        await self._bot("POST", f"{ADMIN}/v1/rooms/{_q(room_id)}/make_room_admin", {"user_id": user_id})
