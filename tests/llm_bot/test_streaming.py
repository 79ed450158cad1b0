"""End to end through a real client (matrix-nio) against our homeserver with the bot as its
appservice and the fake streaming backend: a DM answered with typing, then a message that grows by
edits to the final text with metadata, seen identically by two devices of the user."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import nio

from bridges.llm_bot.streaming import METADATA_KEY

from .fake_openai import MODEL, Script
from .harness import BOT, bot_messages, has_final, start_env, sync_until, timeline

CHUNKS = ["Streaming", " works", ":", " this", " is", " a", " **bold**", " answer", " in", " pieces", "."]


def _typing_bot(response: nio.SyncResponse, room_id: str) -> bool:
    room = response.rooms.join.get(room_id)
    return bool(room) and any(isinstance(e, nio.TypingNoticeEvent) and BOT in e.users for e in room.ephemeral)


def _bodies(events: list[dict[str, Any]]) -> tuple[str, list[str], dict[str, Any]]:
    """(first message body, bodies of its edits in order, the final content)."""
    messages = bot_messages(events)
    first = next(e for e in messages if "m.relates_to" not in e["content"])
    edits = [
        e
        for e in messages
        if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
        and e["content"]["m.relates_to"]["event_id"] == first["event_id"]
    ]
    return (
        first["content"]["body"],
        [e["content"]["m.new_content"]["body"] for e in edits],
        edits[-1]["content"],
    )


async def test_dm_typing_then_growing_message_on_two_devices(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    env = await start_env(aiohttp_client, aiohttp_server, tmp_path)
    alice = await env.user("alice")
    phone = await env.second_device(alice)
    try:
        room_id = await env.room_with_bot(alice, direct=True)
        assert env.bot.is_dm(room_id)
        await alice.sync(timeout=0, since=alice.next_batch)
        await phone.sync(timeout=0, since=phone.next_batch)
        release = asyncio.Event()
        env.backend.scripts.append(Script(chunks=CHUNKS, release=release))

        sent = await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "how do you stream?"}
        )
        assert isinstance(sent, nio.RoomSendResponse), sent
        # The model "thinks" until released: meanwhile the user sees the bot typing.
        laptop_seen = await sync_until(alice, lambda r: _typing_bot(r, room_id))
        assert not bot_messages(timeline(laptop_seen, room_id))  # nothing written yet
        release.set()
        laptop_seen += await sync_until(alice, lambda r: has_final(timeline([r], room_id)))
        phone_seen = await sync_until(phone, lambda r: has_final(timeline([r], room_id)))
    finally:
        await alice.close()
        await phone.close()

    first, edits, final = _bodies(timeline(laptop_seen, room_id))
    assert first and "".join(CHUNKS).startswith(first)
    assert len(edits) >= 3  # it grew through several edits
    growth = [first, *edits]
    assert all(b.startswith(a) for a, b in itertools.pairwise(growth))
    assert len(set(growth)) >= 4
    assert edits[-1] == "".join(CHUNKS)
    new_content = final["m.new_content"]
    assert new_content["format"] == "org.matrix.custom.html"
    assert "<strong>bold</strong>" in new_content["formatted_body"]
    metadata = new_content[METADATA_KEY]
    assert metadata["model"] == MODEL and metadata["outcome"] == "ok"
    assert metadata["usage"]["completion_tokens"] == len(CHUNKS) and metadata["usage"]["prompt_tokens"] > 0
    # the second device saw exactly the same stream of edits
    assert _bodies(timeline(phone_seen, room_id))[:2] == (first, edits)

    # the request the backend received: system prompt, then the question as the user's turn
    request = env.backend.requests[-1]
    assert request["stream"] is True and request["model"] == "fake-model-7b"
    assert request["messages"][0]["role"] == "system"
    assert request["messages"][-1] == {"role": "user", "content": f"{alice.user_id}: how do you stream?"}
    # typing stopped once the answer started appearing
    typing_updates = [
        BOT in e.users
        for r in laptop_seen
        if room_id in r.rooms.join
        for e in r.rooms.join[room_id].ephemeral
        if isinstance(e, nio.TypingNoticeEvent)
    ]
    assert typing_updates[0] is True and typing_updates[-1] is False
    await env.bot.idle()
    assert env.bot.store.usage_today("user", alice.user_id) > 0
