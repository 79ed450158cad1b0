"""A local OpenAI-compatible server for the tests: `POST /v1/chat/completions` streams real
server-sent events (`data: {chunk with choices[0].delta.content}` ... `data: [DONE]`), following a
script per request; `POST /v1/embeddings` answers hashed bag-of-words vectors (the fallback when the
local model is not installed). Every request body is recorded for assertions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODEL = "fake-model-7b"


@dataclass
class Script:
    """How to answer one chat request."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake", " model", "."])
    delay_s: float = 0.0  # between chunks (the model writing)
    release: asyncio.Event | None = None  # wait for it before the first chunk (the model thinking)
    status: int = 200  # anything else: an error answer, no stream
    drop_after: int | None = None  # break the connection after this many chunks ...
    drop_gate: asyncio.Event | None = None  # ... once this is set (the client has read them)
    stall_after: int | None = None  # go silent after this many chunks
    malformed: bool = False  # mix broken chunks into the stream
    usage: bool = True  # send the usage chunk (stream_options.include_usage)


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self.scripts: list[Script] = []  # consumed one per chat request; then the default
        self.default = Script()
        self.started = asyncio.Event()  # set when a chat request arrives

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.started.set()
        script = self.scripts.pop(0) if self.scripts else self.default
        if script.status != 200:
            return web.json_response({"error": {"message": "model overloaded"}}, status=script.status)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        if script.release is not None:
            await response.write(b": thinking\n\n")  # an SSE comment: must be ignored
            await script.release.wait()
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
        await self._event(response, {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        for number, text in enumerate(script.chunks):
            if script.drop_after is not None and number == script.drop_after:
                if script.drop_gate is not None:
                    await script.drop_gate.wait()
                assert request.transport is not None
                request.transport.close()  # a broken connection mid-answer
                return response
            if script.stall_after is not None and number == script.stall_after:
                await asyncio.sleep(3600)
            if script.malformed and number % 2 == 1:
                await response.write(b"data: {not json\n\n")
                await response.write(b'data: {"choices": "nope"}\n\n')
            chunk = {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            await self._event(response, chunk)
            if script.delay_s:
                await asyncio.sleep(script.delay_s)
        await self._event(response, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if script.usage:
            prompt = sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4
            usage = {"prompt_tokens": prompt, "completion_tokens": len(script.chunks)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            await self._event(response, {**base, "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    async def _event(response: web.StreamResponse, chunk: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.embedding_requests.append(body)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_vector(t)} for i, t in enumerate(texts)
        ]
        return web.json_response({"object": "list", "data": data, "model": body.get("model")})


def hashed_vector(text: str, dims: int = 256) -> list[float]:
    vector = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
