"""An OpenAI-compatible chat-completions client that streams (`stream: true`, server-sent events),
plus `/v1/embeddings`. Malformed SSE chunks are skipped and counted, never fatal; a backend that
is down, answers an error status, or goes silent raises `BackendError` with a short reason."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bridges.llm_bot import metrics
from bridges.llm_bot.config import BackendConfig

logger = logging.getLogger(__name__)


class BackendError(Exception):
    """`kind`: unreachable | status | timeout | stream. The message is safe to show to users."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass
class Delta:
    """One piece of the answer, or the closing information (finish reason, usage)."""

    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    model: str | None = None


def _headers(backend: BackendConfig) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if backend.api_key:
        headers["Authorization"] = f"Bearer {backend.api_key}"
    return headers


def parse_sse_data(data: str, backend_name: str) -> Delta | None:
    """One `data:` payload of the stream -> a Delta (None: nothing usable, e.g. a malformed chunk)."""
    try:
        chunk = json.loads(data)
    except ValueError:
        metrics.MALFORMED_CHUNKS.labels(backend_name).inc()
        logger.warning("backend %s: skipping a malformed SSE chunk: %.80r", backend_name, data)
        return None
    if not isinstance(chunk, dict):
        metrics.MALFORMED_CHUNKS.labels(backend_name).inc()
        return None
    if isinstance(chunk.get("error"), dict | str):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise BackendError("stream", f"the backend reported an error: {str(message)[:200]}")
    delta = Delta(model=chunk.get("model") if isinstance(chunk.get("model"), str) else None)
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        delta.usage = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        inner = choice.get("delta")
        if not isinstance(inner, dict):  # some servers send `message` in the last chunk
            message = choice.get("message")
            inner = message if isinstance(message, dict) else {}
        content = inner.get("content")
        if isinstance(content, str):
            delta.text = content
        elif content is not None:
            metrics.MALFORMED_CHUNKS.labels(backend_name).inc()
        if isinstance(choice.get("finish_reason"), str):
            delta.finish_reason = choice["finish_reason"]
    elif choices is not None and not isinstance(choices, list):
        metrics.MALFORMED_CHUNKS.labels(backend_name).inc()
        return None
    return delta


class ChatBackend:
    def __init__(self, config: BackendConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session

    async def stream_chat(
        self, messages: list[dict[str, str]], *, model: str, temperature: float, max_tokens: int
    ) -> AsyncIterator[Delta]:
        """Yield deltas as the model writes. Raises BackendError (before or during the stream)."""
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        url = f"{self.config.base_url}/chat/completions"
        timeout = aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout_s)
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(
                self.session.post(url, json=body, headers=_headers(self.config), timeout=timeout),
                self.config.first_token_timeout_s,
            )
        except TimeoutError as exc:
            raise BackendError("timeout", "the model backend did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise BackendError("unreachable", "the model backend is unreachable") from exc
        async with response:
            if response.status != 200:
                text = (await response.text(errors="replace"))[:200]
                raise BackendError("status", f"the model backend answered HTTP {response.status}: {text}")
            got_first = False

            def limit() -> float:  # until the first text the model may "think" longer
                return self.config.idle_timeout_s if got_first else self.config.first_token_timeout_s

            async for data in self._events(response, limit):
                if data.strip() == "[DONE]":
                    return
                delta = parse_sse_data(data, self.config.name)
                if delta is None:
                    continue
                if delta.text and not got_first:
                    got_first = True
                    metrics.FIRST_TOKEN_SECONDS.labels(self.config.name).observe(time.monotonic() - started)
                yield delta

    async def _events(
        self, response: aiohttp.ClientResponse, limit: Callable[[], float]
    ) -> AsyncIterator[str]:
        """The `data` of each server-sent event (multi-line data joined with newlines)."""
        data_lines: list[str] = []
        while True:
            try:
                raw = await asyncio.wait_for(response.content.readline(), limit())
            except TimeoutError as exc:
                raise BackendError("timeout", "the model backend stopped answering") from exc
            except (aiohttp.ClientError, ConnectionError) as exc:
                raise BackendError("stream", "the connection to the model backend broke") from exc
            if not raw:  # end of body
                if data_lines:
                    yield "\n".join(data_lines)
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line:
                if data_lines:
                    yield "\n".join(data_lines)
                    data_lines = []
                continue
            if line.startswith(":"):  # SSE comment / keep-alive
                continue
            name, _, value = line.partition(":")
            if name == "data":
                data_lines.append(value[1:] if value.startswith(" ") else value)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        body = {"model": self.config.embedding_model or self.config.model, "input": texts}
        url = f"{self.config.base_url}/embeddings"
        timeout = aiohttp.ClientTimeout(
            total=self.config.first_token_timeout_s, connect=self.config.connect_timeout_s
        )
        try:
            async with self.session.post(
                url, json=body, headers=_headers(self.config), timeout=timeout
            ) as resp:
                if resp.status != 200:
                    raise BackendError("status", f"embeddings: HTTP {resp.status}")
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BackendError("unreachable", f"embeddings: {type(exc).__name__}") from exc
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != len(texts):
            raise BackendError("stream", "embeddings: malformed answer")
        ordered = sorted(data, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)
        vectors = []
        for item in ordered:
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
                raise BackendError("stream", "embeddings: malformed vector")
            vectors.append([float(x) for x in vector])
        return vectors
