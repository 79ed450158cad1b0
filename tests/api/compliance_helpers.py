"""A small client for the retention, erasure and masking tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .helpers import auth, register

V3 = "/_matrix/client/v3"


def q(value: str) -> str:
    return quote(value, safe="")


class User:
    def __init__(self, client: Any, body: dict[str, Any], password: str = "pass-word-1") -> None:
        self.client = client
        self.user_id: str = body["user_id"]
        self.token: str = body["access_token"]
        self.password = password
        self._txn = 0

    @classmethod
    async def new(cls, client: Any, localpart: str, admin: bool = False) -> User:
        return cls(client, await register(client, localpart, admin=admin))

    async def call(self, method: str, path: str, body: Any = None, expect: int | None = 200) -> Any:
        resp = await self.client.request(method, path, json=body, headers=auth(self.token))
        data = await resp.json()
        if expect is not None:
            assert resp.status == expect, (path, resp.status, data)
        return data

    async def create_room(self, **body: Any) -> str:
        return str((await self.call("POST", f"{V3}/createRoom", body))["room_id"])

    async def join(self, room_id: str) -> None:
        await self.call("POST", f"{V3}/join/{q(room_id)}", {})

    async def send(self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        self._txn += 1
        path = f"{V3}/rooms/{q(room_id)}/send/{event_type}/t{self._txn}"
        return str((await self.call("PUT", path, content))["event_id"])

    async def say(self, room_id: str, text: str) -> str:
        return await self.send(room_id, {"msgtype": "m.text", "body": text})

    async def state(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        path = f"{V3}/rooms/{q(room_id)}/state/{event_type}/"
        return str((await self.call("PUT", path, content))["event_id"])

    async def messages(self, room_id: str) -> list[dict[str, Any]]:
        data = await self.call("GET", f"{V3}/rooms/{q(room_id)}/messages?dir=b&limit=100")
        return list(data["chunk"])

    async def timeline(self, room_id: str) -> list[dict[str, Any]]:
        flt = '{"room":{"timeline":{"limit":100}}}'
        data = await self.call("GET", f"{V3}/sync?filter={q(flt)}")
        return list(data["rooms"]["join"][room_id]["timeline"]["events"])

    async def search(self, term: str) -> dict[str, Any]:
        body = {"search_categories": {"room_events": {"search_term": term}}}
        data = await self.call("POST", f"{V3}/search", body)
        return dict(data["search_categories"]["room_events"])

    async def upload(self, data: bytes) -> str:
        headers = {**auth(self.token), "Content-Type": "image/png"}
        resp = await self.client.post("/_matrix/media/v3/upload", data=data, headers=headers)
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["content_uri"])

    async def download_status(self, mxc: str) -> int:
        server, media_id = mxc[len("mxc://") :].split("/", 1)
        resp = await self.client.get(
            f"/_matrix/client/v1/media/download/{server}/{media_id}", headers=auth(self.token)
        )
        return int(resp.status)
