"""Helpers for the receipts / typing / presence / tags / ignore API tests: a small user client,
sync streams that wait on tokens (long-polls), and spec schema checks of events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from synapse_compat_tests.spec_schema import assert_matches_spec, spec_dir, validate

from ..conftest import services_of
from .helpers import auth, register

V3 = "/_matrix/client/v3"
OPEN_LIMITS = {"per_second": 10000, "burst_count": 100000}
# Tests of other features keep presence (which activity and syncs change) out of their long-polls.
NO_PRESENCE = {"presence": {"enabled": False}}


def q(value: str) -> str:
    return quote(value, safe="")


class User:
    def __init__(self, client: Any, body: dict[str, Any]) -> None:
        self.client = client
        self.user_id: str = body["user_id"]
        self.token: str = body["access_token"]
        self.device_id: str = body.get("device_id", "")
        self._txn = 0

    @classmethod
    async def new(cls, client: Any) -> User:
        return cls(client, await register(client))

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)

    async def request(
        self, method: str, path: str, body: Any = None, expect: int | None = 200, **params: Any
    ) -> tuple[int, Any]:
        query = {k: (json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in params.items()}
        kwargs: dict[str, Any] = {"headers": self.headers, "params": query}
        if body is not None:
            kwargs["json"] = body
        resp = await self.client.request(method, path, **kwargs)
        data = await resp.json()
        if expect is not None:
            assert resp.status == expect, (method, path, resp.status, data)
        return resp.status, data

    async def get(self, path: str, expect: int = 200, **params: Any) -> Any:
        return (await self.request("GET", path, None, expect, **params))[1]

    async def put(self, path: str, body: Any, expect: int = 200) -> Any:
        return (await self.request("PUT", path, body, expect))[1]

    async def post(self, path: str, body: Any, expect: int = 200) -> Any:
        return (await self.request("POST", path, body, expect))[1]

    async def delete(self, path: str, expect: int = 200) -> Any:
        return (await self.request("DELETE", path, None, expect))[1]

    async def create_room(self, **body: Any) -> str:
        body.setdefault("preset", "public_chat")
        return str((await self.post(f"{V3}/createRoom", body))["room_id"])

    async def join(self, room_id: str) -> None:
        await self.post(f"{V3}/join/{q(room_id)}", {})

    async def leave(self, room_id: str) -> None:
        await self.post(f"{V3}/rooms/{q(room_id)}/leave", {})

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.post(f"{V3}/rooms/{q(room_id)}/invite", {"user_id": user_id})

    async def send(self, room_id: str, body: str = "hi", **content: Any) -> str:
        self._txn += 1
        payload = {"msgtype": "m.text", "body": body, **content}
        path = f"{V3}/rooms/{q(room_id)}/send/m.room.message/t{self._txn}"
        return str((await self.put(path, payload))["event_id"])

    async def receipt(
        self, room_id: str, event_id: str, receipt_type: str = "m.read", expect: int = 200, **body: Any
    ) -> Any:
        path = f"{V3}/rooms/{q(room_id)}/receipt/{q(receipt_type)}/{q(event_id)}"
        return await self.post(path, body, expect)

    async def typing(
        self, room_id: str, typing: bool, timeout_ms: int | None = None, expect: int = 200
    ) -> Any:
        body: dict[str, Any] = {"typing": typing}
        if timeout_ms is not None:
            body["timeout"] = timeout_ms
        return await self.put(f"{V3}/rooms/{q(room_id)}/typing/{q(self.user_id)}", body, expect)

    async def sync(self, since: str | None = None, timeout_ms: int = 0, **params: Any) -> dict[str, Any]:
        """GET /sync. Presence stays out of the way (`set_presence=offline`) unless the caller
        passes `set_presence` (None: the parameter is left out, which means online)."""
        if since is not None:
            params["since"] = since
        params.setdefault("set_presence", "offline")
        if params["set_presence"] is None:
            del params["set_presence"]
        body = await self.get(f"{V3}/sync", timeout=timeout_ms, **params)
        assert_matches_spec("sync.yaml", "/sync", "GET", 200, body)
        return dict(body)

    def stream(self, **params: Any) -> SyncStream:
        return SyncStream(self, params)


class SyncStream:
    """Incremental syncs for one user that remember next_batch."""

    def __init__(self, user: User, params: dict[str, Any]) -> None:
        self.user = user
        self.params = params
        self.since: str | None = None

    async def sync(self, timeout_ms: int = 0) -> dict[str, Any]:
        body = await self.user.sync(self.since, timeout_ms, **self.params)
        self.since = body["next_batch"]
        return body

    def start(self, timeout_ms: int = 30_000) -> asyncio.Task[dict[str, Any]]:
        """A long-poll in the background (await it after causing the change)."""
        return asyncio.ensure_future(self.sync(timeout_ms))

    async def until(self, predicate: Callable[[dict[str, Any]], Any], rounds: int = 20) -> Any:
        for _ in range(rounds):
            found = predicate(await self.sync(timeout_ms=10_000))
            if found:
                return found
        raise AssertionError("sync: condition not met")


async def parked(client: Any, users: int = 1) -> None:
    """Wait until `users` long-polls are parked in the notifier (so a change wakes them)."""
    notifier = services_of(client).notifier
    for _ in range(2000):
        if notifier.waiting_users >= users:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("long-poll did not park")


def ephemeral(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get("join", {}).get(room_id) or {}
    events = (room.get("ephemeral") or {}).get("events", [])
    return [e for e in events if e.get("type") == event_type]


def room_account_data(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get("join", {}).get(room_id) or {}
    events = (room.get("account_data") or {}).get("events", [])
    return [e for e in events if e.get("type") == event_type]


def presence_of(body: dict[str, Any], user_id: str) -> dict[str, Any] | None:
    for event in (body.get("presence") or {}).get("events", []):
        if event.get("sender") == user_id:
            return dict(event)
    return None


def timeline_ids(body: dict[str, Any], room_id: str) -> list[str]:
    room = body.get("rooms", {}).get("join", {}).get(room_id) or {}
    return [e["event_id"] for e in (room.get("timeline") or {}).get("events", [])]


def assert_event_schema(event: dict[str, Any]) -> None:
    ref = (spec_dir() / "data" / "event-schemas" / "schema" / f"{event['type']}.yaml").resolve().as_uri()
    validate(ref + "#", event, f"{event['type']} event")
