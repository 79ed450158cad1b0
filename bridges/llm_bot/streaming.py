"""One streamed answer on the Matrix side: the first message as soon as there is text, then
`m.replace` edits at a bounded rate, then a final edit with the whole answer and its metadata."""

from __future__ import annotations

import time
from typing import Any

from appservices import Intent
from bridges.llm_bot import metrics
from bridges.llm_bot.config import StreamingConfig
from bridges.llm_bot.render import message_content

METADATA_KEY = "net.homeserver.llm_bot"


class StreamedReply:
    def __init__(
        self,
        intent: Intent,
        room_id: str,
        config: StreamingConfig,
        relation: dict[str, Any] | None,
        clock: Any = time.monotonic,
    ) -> None:
        self.intent = intent
        self.room_id = room_id
        self.config = config
        self.relation = relation  # thread or reply relation of the first message
        self.clock = clock
        self.event_id: str | None = None
        self.edits = 0
        self._shown = ""
        self._last_sent = 0.0
        self._tokens_since = 0

    async def _send_first(self, text: str, extra: dict[str, Any] | None = None, notice: bool = False) -> None:
        content: dict[str, Any] = message_content(text, notice=notice)
        if extra:
            content.update(extra)
        if self.relation:
            content["m.relates_to"] = self.relation
        self.event_id = await self.intent.send_event(self.room_id, "m.room.message", content)
        self._shown = text
        self._last_sent = self.clock()

    async def _edit(self, text: str, extra: dict[str, Any] | None = None, notice: bool = False) -> None:
        assert self.event_id is not None
        new_content: dict[str, Any] = message_content(text, notice=notice)
        if extra:
            new_content.update(extra)
        content: dict[str, Any] = {**new_content, "body": f"* {text}", "m.new_content": new_content}
        if "formatted_body" in new_content:
            content["formatted_body"] = f"* {new_content['formatted_body']}"
        content["m.relates_to"] = {"rel_type": "m.replace", "event_id": self.event_id}
        await self.intent.send_event(self.room_id, "m.room.message", content)
        self.edits += 1
        metrics.EDITS.inc()
        self._shown = text
        self._last_sent = self.clock()
        self._tokens_since = 0

    async def update(self, text: str, new_tokens: int = 1) -> None:
        """The answer so far; sends the first message or an edit if the rate allows it."""
        self._tokens_since += new_tokens
        if not text.strip():
            return
        if self.event_id is None:
            await self._send_first(text)
            return
        if text == self._shown:
            return
        elapsed_ms = (self.clock() - self._last_sent) * 1000
        by_time = elapsed_ms >= self.config.edit_interval_ms
        by_tokens = (
            self.config.edit_every_tokens > 0
            and self._tokens_since >= self.config.edit_every_tokens
            and elapsed_ms >= self.config.min_edit_interval_ms
        )
        if by_time or by_tokens:
            await self._edit(text)

    async def finish(self, text: str, metadata: dict[str, Any], *, notice: bool = False) -> None:
        """The whole answer with its metadata: an edit, or the only message if none was sent yet."""
        extra = {METADATA_KEY: metadata}
        if self.event_id is None:
            await self._send_first(text, extra, notice)
        else:
            await self._edit(text, extra, notice)
