"""A fake appservice (an aiohttp test server) that records the transactions a homeserver pushes,
and helpers to start our homeserver with registrations pointing at it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.container import Services
from homeserver.core.streams import Stream

from ..conftest import make_config, services_of

SERVER = "test.local"
WAIT = 20.0  # seconds: generous, a CI machine may be slow


@dataclass
class Received:
    txn_id: str
    body: dict[str, Any]
    status: int
    query: dict[str, str]
    authorization: str | None


@dataclass
class FakeAppService:
    """One registration's endpoint, served under `/{name}` of the shared fake server."""

    name: str
    hs_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    as_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    attempts: list[Received] = field(default_factory=list)
    fail_status: int | None = None  # answer transactions with this status while set
    gate: asyncio.Event | None = None  # hold transactions until set
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def accepted(self) -> list[Received]:
        """Transactions answered 200, first time per txn id (as a deduplicating appservice)."""
        seen: set[str] = set()
        out = []
        for r in self.attempts:
            if r.status == 200 and r.txn_id not in seen:
                seen.add(r.txn_id)
                out.append(r)
        return out

    def events(self) -> list[dict[str, Any]]:
        return [e for r in self.accepted for e in r.body["events"]]

    def bodies(self) -> list[str]:
        return [e["content"].get("body", "") for e in self.events() if e["type"] == "m.room.message"]

    def ephemeral(self, key: str = "ephemeral") -> list[dict[str, Any]]:
        return [e for r in self.accepted for e in r.body.get(key, [])]

    async def wait_until(self, predicate: Callable[[], bool], seconds: float = WAIT) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), seconds)


class FakeServer:
    def __init__(self) -> None:
        self.services: dict[str, FakeAppService] = {}
        self.server: TestServer | None = None

    def add(self, name: str) -> FakeAppService:
        self.services[name] = FakeAppService(name)
        return self.services[name]

    def url(self, name: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/{name}"))

    async def _transaction(self, request: web.Request) -> web.Response:
        fake = self.services[request.match_info["name"]]
        body = await request.json()
        if fake.gate is not None:
            await fake.gate.wait()
        header = request.headers.get("Authorization")
        status = fake.fail_status or (200 if header == f"Bearer {fake.hs_token}" else 403)
        async with fake.changed:
            fake.attempts.append(
                Received(request.match_info["txnId"], body, status, dict(request.query), header)
            )
            fake.changed.notify_all()
        return web.json_response({} if status == 200 else {"errcode": "M_UNKNOWN"}, status=status)

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/{name}/_matrix/app/v1/transactions/{txnId}", self._transaction)
        app.router.add_post("/{name}/_matrix/app/v1/ping", self._ping)
        return app


def registration(
    fake: FakeAppService | None,
    url: str | None,
    *,
    name: str | None = None,
    users: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
    rooms: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    ident = name or (fake.name if fake else "none")
    return {
        "id": ident,
        "url": url,
        "as_token": fake.as_token if fake else secrets.token_urlsafe(16),
        "hs_token": fake.hs_token if fake else secrets.token_urlsafe(16),
        "sender_localpart": f"{ident}bot",
        "rate_limited": False,
        "namespaces": {
            "users": [{"exclusive": True, "regex": r} for r in users],
            "aliases": [{"exclusive": True, "regex": r} for r in aliases],
            "rooms": [{"exclusive": False, "regex": r} for r in rooms],
        },
        **extra,
    }


def write_registrations(tmp_path: Path, registrations: list[dict[str, Any]]) -> list[str]:
    paths = []
    for reg in registrations:
        path = tmp_path / f"{reg['id']}.yaml"
        path.write_text(yaml.safe_dump(reg))
        paths.append(str(path))
    return paths


async def start_homeserver(
    aiohttp_client: Any, tmp_path: Path, paths: list[str], config: HomeserverConfig | None = None
) -> TestClient:
    config = config or make_config(tmp_path, app_service_config_files=paths)
    client: TestClient = await aiohttp_client(create_app_from_config(config))
    sender = services_of(client).appservice_sender
    sender.policy.min_s, sender.policy.max_s = 0.05, 0.4
    return client


async def drained(services: Services, seconds: float = WAIT) -> None:
    """Until every appservice queue has covered the events stream and has nothing unacknowledged."""
    sender = services.appservice_sender

    def done() -> bool:
        head = services.bus.positions[Stream.EVENTS]
        return all(
            q.events_pos >= head and not q.pending_transactions and not q.window
            for q in sender.queues.values()
        )

    async with asyncio.timeout(seconds):
        while not done():  # noqa: ASYNC110 - the queues have no event to wait on; a short poll
            await asyncio.sleep(0.01)
