"""A fake push gateway and helpers for the push delivery tests."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from homeserver.container import Services

from .compliance_helpers import V3, User, q

NOTIFY = "/_matrix/push/v1/notify"


class FakeGateway:
    """Records every notify request; answers `status` with `rejected`, like a Sygnal would."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []  # every request, answered or not
        self.received: list[dict[str, Any]] = []  # the requests answered 200
        self.status = 200
        self.rejected: list[str] = []
        self.app = web.Application()
        self.app.router.add_post(NOTIFY, self._notify)

    async def _notify(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.attempts.append(body)
        if self.status != 200:
            return web.json_response({"errcode": "M_UNKNOWN", "error": "down"}, status=self.status)
        self.received.append(body)
        return web.json_response({"rejected": self.rejected})

    def notifications(self) -> list[dict[str, Any]]:
        return [b["notification"] for b in self.received]


def pusher_body(url: str, pushkey: str = "key-1", **data: Any) -> dict[str, Any]:
    return {
        "kind": "http",
        "app_id": "org.school.app",
        "pushkey": pushkey,
        "app_display_name": "School",
        "device_display_name": "Phone",
        "lang": "ko",
        "data": {"url": url, **data},
    }


async def set_pusher(user: User, body: dict[str, Any], expect: int = 200) -> Any:
    return await user.call("POST", f"{V3}/pushers/set", body, expect=expect)


async def list_pushers(user: User) -> list[dict[str, Any]]:
    return list((await user.call("GET", f"{V3}/pushers"))["pushers"])


async def read_up_to(user: User, room_id: str, event_id: str) -> None:
    await user.call("POST", f"{V3}/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})


async def leave(user: User, room_id: str) -> None:
    await user.call("POST", f"{V3}/rooms/{q(room_id)}/leave", {})


async def dm(alice: User, bob: User) -> str:
    room = await alice.create_room(preset="trusted_private_chat", is_direct=True, invite=[bob.user_id])
    await bob.join(room)
    return room


async def settle(services: Services) -> None:
    """Until every pusher has done what it can do now (deliveries are in their own tasks)."""
    await asyncio.sleep(0)
    await services.pusher_pool.wait_idle()
