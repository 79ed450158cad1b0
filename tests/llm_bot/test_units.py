"""Pure parts of the bot: configuration checks, command parsing, rate limits and budgets with a fake
clock, Markdown rendering, the vector index, and the edit rate of a streamed reply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridges.llm_bot.commands import parse_command
from bridges.llm_bot.config import ConfigError, LimitsConfig, StreamingConfig, load_config, parse_config
from bridges.llm_bot.limits import Limiter
from bridges.llm_bot.memory import VectorIndex, from_blob, to_blob
from bridges.llm_bot.render import message_content
from bridges.llm_bot.store import BotStore, StoredMessage
from bridges.llm_bot.streaming import StreamedReply

REG = {"id": "llm", "as_token": "a", "hs_token": "h", "sender_localpart": "assistant"}
BASE = {
    "homeserver_url": "http://127.0.0.1:8008/",
    "server_name": "example.org",
    "backends": {"default": {"base_url": "http://127.0.0.1:11434/v1/", "model": "llama3.1"}},
}


def test_config_defaults_and_overrides() -> None:
    config = parse_config(
        {
            **BASE,
            "room_defaults": {"temperature": 1, "mode": "all"},
            "streaming": {"edit_interval_ms": 300, "edit_every_tokens": 20},
            "memory": {"embeddings": "backend", "recent_messages": 5},
        },
        registration=REG,
    )
    assert config.bot_user_id == "@assistant:example.org"
    assert config.homeserver_url == "http://127.0.0.1:8008"
    assert config.backends["default"].base_url == "http://127.0.0.1:11434/v1"
    assert (config.room_defaults.temperature, config.room_defaults.mode) == (1.0, "all")
    assert config.streaming.edit_every_tokens == 20 and config.memory.recent_messages == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backends": {}}, "backends: at least one backend"),
        ({"backends": {"x": {"model": "m"}}}, "backends.x.base_url: required"),
        (
            {"backends": {"x": {"base_url": "http://h/v1", "model": "m", "tempo": 1}}},
            "backends.x.tempo: unknown key",
        ),
        ({"streaming": {"edit_interval_ms": "fast"}}, "streaming.edit_interval_ms: expected int"),
        ({"limits": {"user_requests_per_minute": True}}, "limits.user_requests_per_minute: expected int"),
        ({"memory": {"embeddings": "magic"}}, "memory.embeddings: local, backend or off"),
        ({"memory": {"embeddings": "backend", "embedding_backend": "nope"}}, "memory.embedding_backend"),
        ({"room_defaults": {"temperature": 5}}, "room_defaults.temperature: temperature: between 0 and 2"),
        ({"room_defaults": {"backend": "nope"}}, "room_defaults.backend: unknown backend"),
        ({"server_name": ""}, "server_name: required"),
    ],
)
def test_config_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_config({**BASE, **change}, registration=REG)


def test_load_config_with_registration_file(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "reg.yaml").write_text(yaml.safe_dump(REG))
    (tmp_path / "bot.yaml").write_text(yaml.safe_dump({**BASE, "registration": str(tmp_path / "reg.yaml")}))
    assert load_config(tmp_path / "bot.yaml").registration["as_token"] == "a"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**BASE, "registration": str(tmp_path / "none.yaml")}))
    with pytest.raises(ConfigError, match="registration"):
        load_config(tmp_path / "bad.yaml")


def test_command_parsing() -> None:
    assert parse_command("hello !bot mode off") is None  # only at the start
    assert parse_command("!stop").name == "stop"  # type: ignore[union-attr]
    ask = parse_command("!ask local what time is it")
    assert ask is not None and (ask.arg, ask.question) == ("local", "what time is it")
    setting = parse_command("!bot system  You are a pirate. ")
    assert setting is not None and (setting.sub, setting.key, setting.arg) == (
        "set",
        "system_prompt",
        "You are a pirate.",
    )
    assert setting.needs_admin
    config = parse_command("!bot show")
    assert config is not None and config.sub == "config" and not config.needs_admin
    assert parse_command("!bot").sub == "help"  # type: ignore[union-attr]
    assert parse_command("!bot frobnicate").sub == "unknown"  # type: ignore[union-attr]
    assert parse_command("!other thing") is None


def test_limiter_windows_and_budgets(tmp_path: Path) -> None:
    now = [1000.0]
    store = BotStore(str(tmp_path / "b.db"))
    limiter = Limiter(
        LimitsConfig(user_requests_per_minute=2, room_requests_per_minute=3, user_tokens_per_day=100),
        store,
        clock=lambda: now[0],
    )
    assert limiter.check("@a:x", "!r") is None
    assert limiter.check("@a:x", "!r") is None
    refusal = limiter.check("@a:x", "!r")
    assert refusal is not None and refusal.scope == "user_rate" and "try again in 60 s" in refusal.message
    assert limiter.check("@b:x", "!r") is None
    refusal = limiter.check("@c:x", "!r")
    assert refusal is not None and refusal.scope == "room_rate"
    now[0] += 61
    assert limiter.check("@a:x", "!r") is None
    store.add_usage("@a:x", "!r", 100)
    refusal = limiter.check("@a:x", "!other")
    assert refusal is not None and refusal.scope == "user_budget"
    store.close()


def test_markdown_rendering_escapes_html() -> None:
    assert message_content("plain") == {"msgtype": "m.text", "body": "plain"}
    rich = message_content("# Title\n\n- **a**\n- `b`\n\n<img src=x onerror=alert(1)>")
    assert "<h1>Title</h1>" in rich["formatted_body"] and "<code>b</code>" in rich["formatted_body"]
    assert "<img" not in rich["formatted_body"] and "&lt;img" in rich["formatted_body"]
    assert message_content("x", notice=True)["msgtype"] == "m.notice"


def test_vector_index_search_and_remove() -> None:
    index = VectorIndex()
    vectors = {"$a": [1.0, 0.0], "$b": [0.7071, 0.7071], "$c": [0.0, 1.0]}
    for event_id, vector in vectors.items():
        index.add("!r", event_id, np.array(vector, dtype=np.float32))
    index.add("!other", "$z", np.array([1.0, 0.0], dtype=np.float32))
    query = np.array([1.0, 0.0], dtype=np.float32)
    assert [e for e, _ in index.search("!r", query, 2)] == ["$a", "$b"]
    assert [e for e, _ in index.search("!r", query, 2, exclude={"$a"})] == ["$b", "$c"]
    assert [e for e, _ in index.search("!r", query, 3, min_score=0.5)] == ["$a", "$b"]
    assert index.remove("!r", "$a") and not index.remove("!r", "$a")
    assert [e for e, _ in index.search("!r", query, 1)] == ["$b"]
    assert index.search("!none", query, 3) == []
    blob = to_blob(np.array([0.5, -1.0], dtype=np.float32))
    assert from_blob(blob).tolist() == [0.5, -1.0]


def test_store_vector_not_attached_after_redaction_or_edit(tmp_path: Path) -> None:
    store = BotStore(str(tmp_path / "b.db"))
    message = StoredMessage("$1", "!r", "@a:x", "hello", 1, None, False)
    store.upsert_message(message, None)
    store.upsert_message(StoredMessage("$1", "!r", "@a:x", "hello edited", 1, None, False), None)
    assert not store.set_vector("$1", "hello", b"\0\0\0\0")  # embedding of the old text: dropped
    assert store.set_vector("$1", "hello edited", b"\0\0\0\0")
    store.delete_message("$1")
    assert not store.set_vector("$1", "hello edited", b"\0\0\0\0")
    assert store.vectors() == []
    assert store.set_flag("!r", "encrypted_notice") and not store.set_flag("!r", "encrypted_notice")
    store.close()


class FakeIntent:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        self.sent.append(content)
        return f"${len(self.sent)}"


async def test_streamed_reply_bounds_the_edit_rate() -> None:
    now = [0.0]
    intent = FakeIntent()
    config = StreamingConfig(edit_interval_ms=400, edit_every_tokens=0)
    reply = StreamedReply(intent, "!r", config, None, clock=lambda: now[0])  # type: ignore[arg-type]
    text = ""
    for _ in range(50):  # 50 tokens, 20 ms apart: one second of writing
        text += "x"
        await reply.update(text)
        now[0] += 0.02
    # the first message at once, then one edit per 400 ms at most
    assert len(intent.sent) == 3
    await reply.finish(text, {"model": "m"})
    assert intent.sent[-1]["m.new_content"]["body"] == "x" * 50
    assert intent.sent[-1]["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$1"}
    assert intent.sent[-1]["m.new_content"]["net.homeserver.llm_bot"] == {"model": "m"}

    # by token count, never faster than the floor
    intent = FakeIntent()
    config = StreamingConfig(edit_interval_ms=100_000, edit_every_tokens=5, min_edit_interval_ms=50)
    reply = StreamedReply(intent, "!r", config, None, clock=lambda: now[0])  # type: ignore[arg-type]
    for i in range(20):
        await reply.update("y" * (i + 1))
        now[0] += 0.005  # fast tokens: the floor (50 ms = 10 tokens) wins over 5 tokens
    assert len(intent.sent) == 1 + 1


def test_main_checks_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from bridges.llm_bot.__main__ import main

    (tmp_path / "reg.yaml").write_text(yaml.safe_dump(REG))
    good = {**BASE, "registration": str(tmp_path / "reg.yaml")}
    (tmp_path / "bot.yaml").write_text(yaml.safe_dump(good))
    assert main(["--config", str(tmp_path / "bot.yaml"), "--check-config"]) == 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**good, "limits": {"oops": 1}}))
    assert main(["--config", str(tmp_path / "bad.yaml"), "--check-config"]) == 2
    assert "llm bot: configuration error: limits.oops: unknown key" in capsys.readouterr().err
