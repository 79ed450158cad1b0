"""Abuse control: the word filter (`word_filter`) and the room-creation policy (`room_creation`).

Word filter. Text is compared after NFKC normalisation and case folding, so "ＢＡＤ", "Bad" and
"bad" are the same word, and decomposed Hangul matches composed Hangul. How a listed word matches
depends on its script:

- words in scripts written with spaces between words (Latin, Cyrillic, Greek, ...) match whole
  words only: "ass" does not match "class" or "passage". A neighbouring letter of a script written
  without spaces does not count as part of the word, so "bad이야" still matches "bad";
- words in scripts written without spaces (Hangul, Han, kana, Thai, ...) match as substrings,
  because Korean attaches particles and endings to the word ("바보야", "바보들이"). Short Korean
  words can therefore match inside longer innocent words; list the specific forms you mean.

Checked: `body` and `formatted_body` (tags stripped, entities decoded) of m.room.message and
m.sticker, including the `m.new_content` of edits; `name` of m.room.name; `topic` and the
`m.topic` texts of m.room.topic; and at createRoom the `name`, `topic` and those initial_state
events. Encrypted events cannot be checked.

`action: reject` refuses the event with 403 M_FORBIDDEN naming the word. `action: redact` accepts it
and immediately redacts it (as its sender, with a reason), so the other members never keep it.
`exempt_admins` lets server admins through.

Room creation. `room_creation.allow: admins` limits createRoom to server admins (and to users
registered by application services); with `allow_direct_messages` everyone can still start a direct
chat: `is_direct: true`, exactly one invitee other than the creator, no `room_alias_name`, not
published, no `public_chat` preset or public join rule, and not a space (no room `type`). Room
upgrades are not room creations: they replace a room (see room_upgrades.py).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from homeserver.config.sections import RoomCreationConfig, WordFilterConfig
from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden
from homeserver.core.streams import EventsRow, StreamRow
from homeserver.events import constants as c
from homeserver.metrics.usage import background_process
from homeserver.services.messages import MessageService
from homeserver.storage.stores.users import UserStore

logger = logging.getLogger(__name__)

MESSAGE_TYPES = frozenset({"m.room.message", "m.sticker"})
NAME = "m.room.name"
TOPIC = "m.room.topic"
CHECKED_TYPES = MESSAGE_TYPES | {NAME, TOPIC}
REDACTION_REASON = "This message contained a word that is not allowed on this server"

# Scripts written without spaces between words: listed words of these scripts match as substrings,
# and their letters do not count as "word characters" next to a Latin word.
_NO_SPACE_RANGES = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff"  # Hangul Jamo
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fdf"  # CJK radicals
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97f"  # Hangul Jamo extended A
    "\uac00-\ud7ff"  # Hangul syllables, Jamo extended B
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003ffff"  # CJK extensions B and later
)
# A letter or digit of a script written with spaces (underscore counts as a separator).
_WORD_CHAR = f"[^\\W_{_NO_SPACE_RANGES}]"
_WORD_CHAR_RE = re.compile(_WORD_CHAR)
_TAG = re.compile(r"<[^>]*>")


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


class WordMatcher:
    """Finds the first listed word in a text (see the module docstring for the matching rules)."""

    def __init__(self, words: Iterable[str]) -> None:
        self._original: dict[str, str] = {}
        for word in words:
            key = normalize(word.strip())
            if key:
                self._original.setdefault(key, word.strip())
        alternatives = []
        for key in sorted(self._original, key=len, reverse=True):
            pattern = re.escape(key)
            if _WORD_CHAR_RE.match(key[0]):
                pattern = f"(?<!{_WORD_CHAR}){pattern}"
            if _WORD_CHAR_RE.match(key[-1]):
                pattern = f"{pattern}(?!{_WORD_CHAR})"
            alternatives.append(f"(?:{pattern})")
        self._regex = re.compile("|".join(alternatives)) if alternatives else None

    def __bool__(self) -> bool:
        return self._regex is not None

    def find(self, text: str) -> str | None:
        """The listed word (as configured) that `text` contains, or None."""
        if self._regex is None or not text:
            return None
        match = self._regex.search(normalize(text))
        return self._original.get(match.group(0)) if match else None


def _html_text(value: str) -> str:
    return html.unescape(_TAG.sub("", value))


def texts_of(event_type: str, content: Mapping[str, Any]) -> Iterator[str]:
    """The user-visible texts of an event that the word filter checks."""
    if event_type in MESSAGE_TYPES:
        for block in (content, content.get("m.new_content")):
            if not isinstance(block, Mapping):
                continue
            body = block.get("body")
            if isinstance(body, str):
                yield body
            formatted = block.get("formatted_body")
            if isinstance(formatted, str):
                yield formatted
                yield _html_text(formatted)
    elif event_type == NAME:
        name = content.get("name")
        if isinstance(name, str):
            yield name
    elif event_type == TOPIC:
        topic = content.get("topic")
        if isinstance(topic, str):
            yield topic
        block = content.get("m.topic")
        texts = block.get("m.text") if isinstance(block, Mapping) else None
        if isinstance(texts, list):
            for text in texts:
                body = text.get("body") if isinstance(text, Mapping) else None
                if isinstance(body, str):
                    yield body
                    if text.get("mimetype") == "text/html":
                        yield _html_text(body)


def _is_direct_message(creator: str, body: Mapping[str, Any]) -> bool:
    invites = body.get("invite") or []
    if body.get("is_direct") is not True or len(invites) != 1 or invites[0] == creator:
        return False
    if body.get("invite_3pid") or body.get("room_alias_name") is not None:
        return False
    if body.get("visibility", "private") != "private" or body.get("preset") == "public_chat":
        return False
    creation_content = body.get("creation_content") or {}
    if isinstance(creation_content, Mapping) and creation_content.get("type") is not None:
        return False  # a space, or another special room type
    for state in body.get("initial_state") or []:
        if state.get("type") == c.JOIN_RULES and state.get("state_key", "") == "":
            if (state.get("content") or {}).get("join_rule") != c.INVITE:
                return False
    return True


class ContentPolicy:
    """The word filter (a MessageService content check, a createRoom check and, in redact mode, an
    events-stream consumer) and the room-creation policy (a RoomService creation check)."""

    def __init__(
        self,
        word_filter: WordFilterConfig,
        room_creation: RoomCreationConfig,
        users: UserStore,
        messages: MessageService,
        *,
        server_name: str,
    ) -> None:
        self.word_filter = word_filter
        self.room_creation = room_creation
        self.users = users
        self.messages = messages
        self.server_name = server_name
        self.matcher = WordMatcher(word_filter.words if word_filter.enabled else ())
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def filtering(self) -> bool:
        return self.word_filter.enabled and bool(self.matcher)

    @property
    def rejecting(self) -> bool:
        return self.filtering and self.word_filter.action == "reject"

    @property
    def redacting(self) -> bool:
        return self.filtering and self.word_filter.action == "redact"

    def blocked_word(self, event_type: str, content: Mapping[str, Any]) -> str | None:
        if event_type not in CHECKED_TYPES:
            return None
        for text in texts_of(event_type, content):
            word = self.matcher.find(text)
            if word is not None:
                return word
        return None

    async def _is_admin(self, user_id: str) -> bool:
        user = await self.users.get_user(user_id)
        return user is not None and user.is_admin

    async def _exempt(self, user_id: str) -> bool:
        return self.word_filter.exempt_admins and await self._is_admin(user_id)

    @staticmethod
    def _refusal(word: str) -> MatrixError:
        return forbidden(f"This message contains a word that is not allowed on this server: {word!r}")

    # -- MessageService.content_checks ------------------------------------------------------------

    async def check_content(
        self, user_id: str, room_id: str, event_type: str, content: dict[str, Any]
    ) -> None:
        if not self.rejecting:
            return
        word = self.blocked_word(event_type, content)
        if word is not None and not await self._exempt(user_id):
            logger.info("word filter: refused a %s from %s in %s", event_type, user_id, room_id)
            raise self._refusal(word)

    # -- RoomService.creation_checks --------------------------------------------------------------

    async def check_room_creation(self, creator: str, body: Mapping[str, Any]) -> None:
        await self._check_creation_allowed(creator, body)
        if self.rejecting:
            await self._check_creation_texts(creator, body)

    async def _check_creation_allowed(self, creator: str, body: Mapping[str, Any]) -> None:
        if self.room_creation.allow == "everyone":
            return
        if self.room_creation.allow_direct_messages and _is_direct_message(creator, body):
            return
        user = await self.users.get_user(creator)
        if user is not None and (user.is_admin or user.appservice_id is not None):
            return
        message = "Only server administrators may create rooms on this server"
        if self.room_creation.allow_direct_messages:
            message += " (direct chats with one person are allowed)"
        raise forbidden(message)

    async def _check_creation_texts(self, creator: str, body: Mapping[str, Any]) -> None:
        candidates: list[tuple[str, Mapping[str, Any]]] = []
        if isinstance(body.get("name"), str):
            candidates.append((NAME, {"name": body["name"]}))
        if isinstance(body.get("topic"), str):
            candidates.append((TOPIC, {"topic": body["topic"]}))
        for state in body.get("initial_state") or []:
            content = state.get("content")
            if state.get("type") in (NAME, TOPIC) and isinstance(content, Mapping):
                candidates.append((state["type"], content))
        for event_type, content in candidates:
            word = self.blocked_word(event_type, content)
            if word is not None and not await self._exempt(creator):
                raise self._refusal(word)

    # -- events stream consumer (redact mode) ----------------------------------------------------

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        if not self.redacting:
            return
        for row in rows:
            if not isinstance(row, EventsRow) or not row.is_live:
                continue
            if row.type not in CHECKED_TYPES or row.redacts is not None:
                continue
            # Messages are not state; names and topics are state with the empty key.
            expected_key = None if row.type in MESSAGE_TYPES else ""
            if row.state_key != expected_key:
                continue
            if ids.server_of(row.sender) != self.server_name:
                continue
            # The content is not in the row: the check reads the event (cached by the persister).
            task = asyncio.create_task(
                background_process(
                    "word_filter_redact", self._check_and_redact(row.sender, row.room_id, row.event_id)
                )
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _check_and_redact(self, sender: str, room_id: str, event_id: str) -> None:
        try:
            stored = await self.messages.events.get_event(event_id)
            if stored is None or self.blocked_word(stored.event.type, stored.event.content) is None:
                return
            if await self._exempt(sender):
                return
            await self.messages.redact(sender, None, room_id, event_id, {"reason": REDACTION_REASON}, None)
            logger.info("word filter: redacted %s from %s in %s", event_id, sender, room_id)
        except MatrixError as exc:
            logger.warning("word filter: could not redact %s in %s: %s", event_id, room_id, exc)
        except Exception:
            logger.exception("word filter: redacting %s in %s failed", event_id, room_id)

    async def drain(self) -> None:
        """Wait for the redactions scheduled so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
