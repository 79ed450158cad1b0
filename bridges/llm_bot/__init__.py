"""An LLM assistant for Matrix as an application service: streams answers from an
OpenAI-compatible backend as a message growing by edits, with memory of the room (recent messages
plus retrieval by embedding similarity). See docs/llm-bot.md."""

from bridges.llm_bot.bot import LlmBot
from bridges.llm_bot.config import BotConfig, ConfigError, load_config, parse_config

__all__ = ["BotConfig", "ConfigError", "LlmBot", "load_config", "parse_config"]
