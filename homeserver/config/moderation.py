"""Moderation keys: `word_filter` and `room_creation` (ours; Synapse does these with modules)."""

from __future__ import annotations

from homeserver.config.database import read_secret_file
from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section
from homeserver.config.sections import RoomCreationConfig, WordFilterConfig

WORD_FILTER_ACTIONS = ("reject", "redact")
ROOM_CREATION_ALLOW = ("everyone", "admins")


def read_word_filter(root: Section) -> WordFilterConfig:
    sec = root.section("word_filter")
    words = [w.strip() for w in sec.get_str_list("words")]
    for index, word in enumerate(words):
        if not word:
            raise ConfigError("expected a non-empty word", f"{sec.key_path('words')}[{index}]")
    path = sec.get_opt_str("words_file")
    if path:
        # One word or phrase per line; blank lines and lines starting with "#" are skipped.
        text = read_secret_file(path, sec.key_path("words_file"))
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                words.append(line.strip())
    return WordFilterConfig(
        # On by default as soon as there is something to filter.
        enabled=sec.get_bool("enabled", bool(words)),
        words=tuple(words),
        action=sec.get_choice("action", "reject", WORD_FILTER_ACTIONS),
        exempt_admins=sec.get_bool("exempt_admins", True),
    )


def read_room_creation(root: Section) -> RoomCreationConfig:
    sec = root.section("room_creation")
    return RoomCreationConfig(
        allow=sec.get_choice("allow", "everyone", ROOM_CREATION_ALLOW),
        allow_direct_messages=sec.get_bool("allow_direct_messages", True),
    )
