"""The OpenAI-compatible streaming client against the fake backend speaking real SSE: deltas,
usage, malformed chunks, error statuses, a broken connection, silence, an unreachable backend."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest

from bridges.llm_bot import metrics
from bridges.llm_bot.backend import BackendError, ChatBackend, parse_sse_data
from bridges.llm_bot.config import BackendConfig

from .fake_openai import MODEL, FakeOpenAI, Script


@pytest.fixture
async def fake(aiohttp_server: Any) -> tuple[FakeOpenAI, str]:
    backend = FakeOpenAI()
    server = await aiohttp_server(backend.app())
    return backend, str(server.make_url("/v1"))


async def _collect(backend: ChatBackend) -> tuple[str, list[Any]]:
    text, deltas = "", []
    async for delta in backend.stream_chat(
        [{"role": "user", "content": "hi"}], model="m", temperature=0.5, max_tokens=50
    ):
        deltas.append(delta)
        text += delta.text
    return text, deltas


async def test_streams_deltas_usage_and_sends_the_openai_body(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    async with aiohttp.ClientSession() as session:
        backend = ChatBackend(BackendConfig("t", url, "m", api_key="sk-test"), session)
        text, deltas = await _collect(backend)
    assert text == "Hello from the fake model."
    assert [d.text for d in deltas if d.text] == ["Hello", " from", " the", " fake", " model", "."]
    assert deltas[-1].usage["completion_tokens"] == 6
    assert any(d.finish_reason == "stop" for d in deltas)
    assert deltas[0].model == MODEL
    body = server.requests[0]
    assert body["stream"] is True and body["model"] == "m" and body["max_tokens"] == 50
    assert body["temperature"] == 0.5 and body["messages"] == [{"role": "user", "content": "hi"}]


async def test_malformed_chunks_are_skipped_and_counted(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.scripts.append(Script(chunks=["a", "b", "c", "d"], malformed=True))
    before = metrics.MALFORMED_CHUNKS.labels("t")._value.get()
    async with aiohttp.ClientSession() as session:
        text, _ = await _collect(ChatBackend(BackendConfig("t", url, "m"), session))
    assert text == "abcd"
    assert metrics.MALFORMED_CHUNKS.labels("t")._value.get() - before == 4


async def test_error_status_is_a_backend_error(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.scripts.append(Script(status=503))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(BackendError) as caught:
            await _collect(ChatBackend(BackendConfig("t", url, "m"), session))
    assert caught.value.kind == "status" and "503" in str(caught.value)


async def test_broken_connection_after_partial_answer(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    gate = asyncio.Event()
    server.scripts.append(Script(chunks=["one", " two", " three"], drop_after=2, drop_gate=gate))
    got: list[str] = []
    async with aiohttp.ClientSession() as session:
        backend = ChatBackend(BackendConfig("t", url, "m"), session)
        with pytest.raises(BackendError) as caught:
            async for delta in backend.stream_chat([], model="m", temperature=0, max_tokens=5):
                got.append(delta.text)
                if "".join(got) == "one two":
                    gate.set()  # the connection breaks after the client has read two chunks
    assert "".join(got) == "one two"
    assert caught.value.kind == "stream"


async def test_silent_backend_times_out(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.scripts.append(Script(chunks=["a", "b"], stall_after=1))
    config = BackendConfig("t", url, "m", idle_timeout_s=0.3)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(BackendError) as caught:
            await _collect(ChatBackend(config, session))
    assert caught.value.kind == "timeout"

    # and one that never starts answering (the model "thinks" forever)
    server.scripts.append(Script(release=asyncio.Event()))
    config = BackendConfig("t", url, "m", first_token_timeout_s=0.3)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(BackendError) as caught:
            await _collect(ChatBackend(config, session))
    assert caught.value.kind == "timeout"


async def test_unreachable_backend() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(BackendError) as caught:
            await _collect(ChatBackend(BackendConfig("t", f"http://127.0.0.1:{port}/v1", "m"), session))
    assert caught.value.kind == "unreachable"


def test_parse_sse_data_cases() -> None:
    assert parse_sse_data("not json", "x") is None
    assert parse_sse_data("[1, 2]", "x") is None
    assert parse_sse_data('{"choices": 5}', "x") is None
    delta = parse_sse_data('{"choices": [{"delta": {"content": 7}}]}', "x")
    assert delta is not None and delta.text == ""  # a non-text content is ignored, not fatal
    delta = parse_sse_data('{"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]}', "x")
    assert delta is not None and (delta.text, delta.finish_reason) == ("whole", "stop")
    with pytest.raises(BackendError):
        parse_sse_data('{"error": {"message": "context too long"}}', "x")


async def test_embeddings_endpoint(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    async with aiohttp.ClientSession() as session:
        backend = ChatBackend(BackendConfig("t", url, "m", embedding_model="embed-small"), session)
        vectors = await backend.embed(["alpha beta", "gamma"])
    assert len(vectors) == 2 and len(vectors[0]) == 256
    assert server.embedding_requests[0] == {"model": "embed-small", "input": ["alpha beta", "gamma"]}
