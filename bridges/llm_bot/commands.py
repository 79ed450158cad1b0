"""Parsing of the commands a user types: `!stop`, `!ask <backend> <question>` and
`!bot <subcommand> ...`. Only the live message's own body is parsed (never retrieved history or
the model's output), and settings changes need the room admin power level (checked by the bot)."""

from __future__ import annotations

from dataclasses import dataclass

HELP = """Commands:
- `!stop`: stop the answer being written
- `!ask <backend> <question>`: ask one configured backend
- `!bot config`: show this room's settings
- `!bot usage`: tokens used today by you and by this room
- `!bot help`: this help
Room admins only:
- `!bot backend <name>`, `!bot model <name>`, `!bot system <prompt>`, `!bot temperature <0-2>`,
  `!bot max_tokens <n>`, `!bot mode mention|all|off`, `!bot on_busy queue|cancel`
- `!bot reset`: back to the defaults"""

# `!bot <alias>` -> the setting it changes
SETTING_ALIASES = {
    "backend": "backend",
    "model": "model",
    "system": "system_prompt",
    "system_prompt": "system_prompt",
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "mode": "mode",
    "on_busy": "on_busy",
}
OPEN_SUBCOMMANDS = {"help", "config", "show", "usage"}


@dataclass(frozen=True)
class Command:
    name: str  # stop | ask | bot
    sub: str = ""  # for bot: help | config | usage | reset | set
    key: str = ""  # for set: the setting
    arg: str = ""  # the rest of the line (question for ask, value for set, backend for ask)
    question: str = ""

    @property
    def needs_admin(self) -> bool:
        return self.name == "bot" and self.sub in ("set", "reset")


def parse_command(body: str) -> Command | None:
    """A command at the start of the body, or None for an ordinary message."""
    text = body.strip()
    if not text.startswith("!"):
        return None
    head, _, rest = text.partition(" ")
    head = head.lower()
    rest = rest.strip()
    if head == "!stop":
        return Command("stop")
    if head == "!ask":
        backend, _, question = rest.partition(" ")
        return Command("ask", arg=backend, question=question.strip())
    if head != "!bot":
        return None
    sub, _, value = rest.partition(" ")
    sub = sub.lower() or "help"
    if sub in OPEN_SUBCOMMANDS:
        return Command("bot", "config" if sub == "show" else sub)
    if sub == "reset":
        return Command("bot", "reset")
    if sub in SETTING_ALIASES:
        return Command("bot", "set", SETTING_ALIASES[sub], value.strip())
    return Command("bot", "unknown", arg=sub)
