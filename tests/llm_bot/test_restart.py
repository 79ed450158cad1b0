"""The bot restarted on the same database: it knows its rooms again (joined rooms and their state
read back from the homeserver), keeps its memory, settings and usage, and serves its metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from bridges.llm_bot import LlmBot

from .harness import collect_until, finals, send, start_env, wait_for


async def test_restart_keeps_rooms_memory_and_settings(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    env = await start_env(aiohttp_client, aiohttp_server, tmp_path)
    alice = await env.user("alice")
    try:
        room_id = await env.room_with_bot(alice, direct=True)
        await send(alice, room_id, "!bot max_tokens 123")
        await send(alice, room_id, "my name is Alice and I like tea")
        await collect_until(alice, room_id, lambda ev: len(finals(ev)) == 1)
        await env.bot.idle()

        port = env.bot_server.port
        await env.bot_server.close()  # stops the bot (cleanup context closes it)
        bot = LlmBot(env.bot.config)
        await aiohttp_server(bot.make_app(), port=port)
        await wait_for(lambda: bot.state.is_joined(room_id, bot.bot_id))
        assert bot.is_dm(room_id) and bot.settings(room_id).max_tokens == 123

        await send(alice, room_id, "what do I like?")
        await wait_for(lambda: len(env.backend.requests) == 2, limit_s=60)
        messages = env.backend.requests[1]["messages"]
        assert {"role": "assistant", "content": "Hello from the fake model."} in messages
        assert any("I like tea" in m["content"] for m in messages)
        assert env.backend.requests[1]["max_tokens"] == 123
        await collect_until(alice, room_id, lambda ev: len(finals(ev)) == 1)
        await bot.idle()
    finally:
        await alice.close()

    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    assert resp.status == 200
    assert f'llm_bot_tokens_total{{kind="completion",room="{room_id}",user="{alice.user_id}"}}' in text
    assert 'llm_bot_requests_total{outcome="ok"' in text


async def test_old_messages_pruned_by_max_age(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    env = await start_env(
        aiohttp_client, aiohttp_server, tmp_path, bot_config={"memory": {"max_age_days": 2}}
    )
    alice = await env.user("alice")
    try:
        room_id = await env.room_with_bot(alice, direct=False)
        await send(alice, room_id, "an old message")
        await wait_for(lambda: env.bot.store.count_messages(room_id) == 1)
        assert env.bot.prune() == 0
        assert env.bot.prune(int(time.time() * 1000) + 3 * 86_400_000) == 1
        assert env.bot.store.count_messages(room_id) == 0
    finally:
        await alice.close()
