"""Acting as one user of the appservice's namespace over the client-server API: the `as_token`
with `?user_id=` (masquerading), registering the user on first use."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import aiohttp

from appservices.state import StateStore

V3 = "/_matrix/client/v3"


class MatrixRequestError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{status} {body}")


def _q(value: str) -> str:
    return quote(value, safe="")


class ClientApi:
    """The homeserver's client-server API with the appservice's `as_token`."""

    def __init__(self, base_url: str, as_token: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.as_token = as_token
        self._session = session
        self._own_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user_id: str | None = None,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> Any:
        query = dict(params or {})
        if user_id is not None:
            query["user_id"] = user_id
        headers = {"Authorization": f"Bearer {self.as_token}"}
        kwargs: dict[str, Any] = {"params": query, "headers": headers}
        if data is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.base_url + path, **kwargs) as resp:
            try:
                answer = await resp.json(content_type=None)
            except ValueError:
                answer = None
            if resp.status >= 400:
                raise MatrixRequestError(resp.status, answer)
            return answer

    async def ping(self, appservice_id: str, transaction_id: str | None = None) -> int:
        """Ask the homeserver to call our `/_matrix/app/v1/ping` (spec v1.7); returns the round
        trip in ms. A homeserver backing off after failed transactions retries them at once."""
        body = {"transaction_id": transaction_id} if transaction_id else {}
        answer = await self.request("POST", f"/_matrix/client/v1/appservice/{_q(appservice_id)}/ping", body)
        return int(answer["duration_ms"])

    def intent(self, user_id: str, state: StateStore | None = None) -> Intent:
        return Intent(self, user_id, state)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()


class Intent:
    """Everything "as user X": each call registers X first if the homeserver does not know it."""

    def __init__(self, api: ClientApi, user_id: str, state: StateStore | None = None) -> None:
        self.api = api
        self.user_id = user_id
        self.state = state
        self._registered = False

    async def _call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        await self.ensure_registered()
        return await self.api.request(method, path, body, user_id=self.user_id, **kw)

    async def ensure_registered(self) -> None:
        if self._registered:
            return
        localpart = self.user_id[1:].split(":", 1)[0]
        try:
            await self.api.request(
                "POST",
                f"{V3}/register",
                {"type": "m.login.application_service", "username": localpart, "inhibit_login": True},
            )
        except MatrixRequestError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise
        self._registered = True

    async def join(self, room_id_or_alias: str) -> str:
        body = await self._call("POST", f"{V3}/join/{_q(room_id_or_alias)}", {})
        room_id = str(body["room_id"])
        if self.state is not None:
            self.state.set_membership(room_id, self.user_id, "join")
        return room_id

    async def leave(self, room_id: str) -> None:
        await self._call("POST", f"{V3}/rooms/{_q(room_id)}/leave", {})
        if self.state is not None:
            self.state.set_membership(room_id, self.user_id, "leave")

    async def invite(self, room_id: str, user_id: str) -> None:
        await self._call("POST", f"{V3}/rooms/{_q(room_id)}/invite", {"user_id": user_id})

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], *, ts: int | None = None
    ) -> str:
        """`ts`: the bridged message's own time (timestamp massaging)."""
        params = {"ts": str(ts)} if ts is not None else None
        txn = secrets.token_hex(8)
        path = f"{V3}/rooms/{_q(room_id)}/send/{_q(event_type)}/{txn}"
        body = await self._call("PUT", path, content, params=params)
        return str(body["event_id"])

    async def send_text(self, room_id: str, text: str, *, notice: bool = False, ts: int | None = None) -> str:
        msgtype = "m.notice" if notice else "m.text"
        return await self.send_event(room_id, "m.room.message", {"msgtype": msgtype, "body": text}, ts=ts)

    async def edit(self, room_id: str, event_id: str, new_text: str) -> str:
        content = {
            "msgtype": "m.text",
            "body": f"* {new_text}",
            "m.new_content": {"msgtype": "m.text", "body": new_text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        return await self.send_event(room_id, "m.room.message", content)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        path = f"{V3}/rooms/{_q(room_id)}/redact/{_q(event_id)}/{secrets.token_hex(8)}"
        body = await self._call("PUT", path, {"reason": reason} if reason else {})
        return str(body["event_id"])

    async def set_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> str:
        path = f"{V3}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        return str((await self._call("PUT", path, content))["event_id"])

    async def set_displayname(self, name: str) -> None:
        await self._call("PUT", f"{V3}/profile/{_q(self.user_id)}/displayname", {"displayname": name})

    async def set_avatar_url(self, mxc: str) -> None:
        await self._call("PUT", f"{V3}/profile/{_q(self.user_id)}/avatar_url", {"avatar_url": mxc})

    async def upload_media(self, data: bytes, content_type: str, filename: str | None = None) -> str:
        params = {"filename": filename} if filename else None
        body = await self._call(
            "POST", "/_matrix/media/v3/upload", data=data, content_type=content_type, params=params
        )
        return str(body["content_uri"])

    async def typing(self, room_id: str, typing: bool, timeout_ms: int = 30_000) -> None:
        body: dict[str, Any] = {"typing": typing}
        if typing:
            body["timeout"] = timeout_ms
        await self._call("PUT", f"{V3}/rooms/{_q(room_id)}/typing/{_q(self.user_id)}", body)

    async def mark_read(self, room_id: str, event_id: str) -> None:
        await self._call("POST", f"{V3}/rooms/{_q(room_id)}/receipt/m.read/{_q(event_id)}", {})

    async def whoami(self) -> str:
        return str((await self._call("GET", f"{V3}/account/whoami"))["user_id"])
