"""Bad input end to end: the backend breaking mid-answer (partial kept, error edit), answering an
error status, a malformed stream; rate limits and budgets answering with a clear message; `!stop`,
and a second question queued or cancelling the first."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bridges.llm_bot import metrics

from .fake_openai import Script
from .harness import collect_until, finals, notices, send, start_env, wait_for


async def test_backend_failure_gives_an_error_edit_and_keeps_the_partial_answer(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    env = await start_env(aiohttp_client, aiohttp_server, tmp_path)
    alice = await env.user("alice")
    try:
        room_id = await env.room_with_bot(alice, direct=True)
        before = metrics.ERRORS.labels("default", "stream")._value.get()
        gate = asyncio.Event()
        env.backend.scripts.append(
            Script(chunks=["The", " answer", " is", " lost"], drop_after=2, drop_gate=gate)
        )
        await send(alice, room_id, "tell me something")
        # the connection breaks once the user has seen the start of the answer
        events = await collect_until(
            alice, room_id, lambda ev: any(e["content"].get("body") == "* The answer" for e in ev)
        )
        gate.set()
        events += await collect_until(alice, room_id, lambda ev: len(finals(ev)) == 1)
        final = finals(events)[0]
        assert final["body"].startswith("The answer\n\n")
        assert "cut off" in final["body"] and "connection to the model backend broke" in final["body"]
        assert final["net.homeserver.llm_bot"]["outcome"] == "error"
        edits = [e for e in events if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"]
        assert edits and edits[-1]["content"]["m.new_content"] == final  # the error is an edit
        assert metrics.ERRORS.labels("default", "stream")._value.get() == before + 1

        # an error status before any token: a short error message, not silence
        env.backend.scripts.append(Script(status=500))
        await send(alice, room_id, "and now?")
        events = await collect_until(alice, room_id, lambda ev: len(finals(ev)) == 1)
        final = finals(events)[0]
        assert final["msgtype"] == "m.notice" and final["body"].startswith(
            "⚠️ the model backend answered HTTP 500"
        )

        # malformed chunks in the stream are skipped: the answer is whole
        env.backend.scripts.append(Script(chunks=["still", " fine", " here", "!"], malformed=True))
        await send(alice, room_id, "and malformed?")
        events = await collect_until(alice, room_id, lambda ev: len(finals(ev)) == 1)
        assert finals(events)[0]["body"] == "still fine here!"
    finally:
        await alice.close()


async def test_rate_limit_and_token_budget_answer_clearly(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    env = await start_env(
        aiohttp_client, aiohttp_server, tmp_path, bot_config={"limits": {"user_requests_per_minute": 1}}
    )
    alice = await env.user("alice")
    try:
        room_id = await env.room_with_bot(alice, direct=True)
        await send(alice, room_id, "first question")
        await send(alice, room_id, "second question")
        events = await collect_until(alice, room_id, lambda ev: bool(finals(ev)) and bool(notices(ev)))
        assert notices(events)[0].startswith(
            "Rate limit: you are sending requests too fast (at most 1 per minute)"
        )
        await env.bot.idle()
        assert len(env.backend.requests) == 1  # the refused question never reached the backend

        # a daily token budget already spent
        env.bot.limiter.config = type(env.bot.limiter.config)(
            user_requests_per_minute=0, user_tokens_per_day=10
        )
        await send(alice, room_id, "third question")
        events = await collect_until(alice, room_id, lambda ev: bool(notices(ev)))
        assert notices(events)[0].startswith("Token budget: you have used your 10 tokens for today")
        assert len(env.backend.requests) == 1
    finally:
        await alice.close()


async def test_stop_keeps_the_partial_answer(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    env = await start_env(aiohttp_client, aiohttp_server, tmp_path)
    alice = await env.user("alice")
    try:
        room_id = await env.room_with_bot(alice, direct=True)
        env.backend.scripts.append(Script(chunks=["Partial", " words", " then", " silence"], stall_after=2))
        await send(alice, room_id, "a long answer please")
        await collect_until(
            alice, room_id, lambda ev: any(e["content"].get("body") == "* Partial words" for e in ev)
        )
        await send(alice, room_id, "!stop")
        events = await collect_until(alice, room_id, lambda ev: len(finals(ev)) == 1)
        final = finals(events)[0]
        assert final["body"] == "Partial words\n\n*⏹ stopped*"
        assert final["net.homeserver.llm_bot"]["outcome"] == "stopped"
        await send(alice, room_id, "!stop")
        events = await collect_until(alice, room_id, lambda ev: bool(notices(ev)))
        assert notices(events) == ["Nothing to stop."]
    finally:
        await alice.close()


async def test_second_question_queued_or_cancelling(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    env = await start_env(aiohttp_client, aiohttp_server, tmp_path)
    alice = await env.user("alice")
    try:
        room_id = await env.room_with_bot(alice, direct=True)
        # queue (the default): the second waits for the first
        release = asyncio.Event()
        env.backend.scripts += [Script(chunks=["one"], release=release), Script(chunks=["two"])]
        await send(alice, room_id, "question one")
        await wait_for(lambda: len(env.backend.requests) == 1)
        second = await send(alice, room_id, "question two")
        await wait_for(lambda: env.bot.store.has_message(second))
        assert len(env.backend.requests) == 1
        release.set()
        events = await collect_until(alice, room_id, lambda ev: len(finals(ev)) == 2)
        assert [f["body"] for f in finals(events)] == ["one", "two"]
        # the second prompt saw the first answer as the assistant's turn
        assert {"role": "assistant", "content": "one"} in env.backend.requests[1]["messages"]

        # cancel: a newer question from the same user replaces the one being answered
        await send(alice, room_id, "!bot on_busy cancel")
        await collect_until(alice, room_id, lambda ev: "on_busy set to 'cancel'." in notices(ev))
        env.backend.scripts += [
            Script(chunks=["old", " answer", " never", " ends"], stall_after=2),
            Script(chunks=["new answer"]),
        ]
        await send(alice, room_id, "question three")
        await collect_until(
            alice, room_id, lambda ev: any(e["content"].get("body") == "* old answer" for e in ev)
        )
        await send(alice, room_id, "question four instead")
        events = await collect_until(alice, room_id, lambda ev: len(finals(ev)) == 2)
        bodies = [f["body"] for f in finals(events)]
        assert bodies == ["old answer\n\n*⏹ stopped: a newer question replaced it*", "new answer"]
    finally:
        await alice.close()
