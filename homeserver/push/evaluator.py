"""A pure, fast push rule evaluator.

`PushRuleEvaluator(rules).actions_for(event, user_id=..., ...)` returns the actions of the first
enabled rule that matches (historical `dont_notify`/`coalesce` stripped), or None when no rule
matches or the user sent the event. The returned list is shared: never mutate it.

It runs at event persistence once per local member of the room, so it is built for that loop:

* Rules are compiled once. Globs become precompiled matchers (plain string comparisons when the
  pattern has no wildcard), dotted paths are split once, and identical conditions are interned, so
  that every user's evaluator shares the same condition objects.
* Conditions that depend only on the event and on the room (everything except the user's id,
  localpart and display name) are evaluated once per event: results are memoised on a
  `PreparedEvent`, keyed by the interned condition sets. Runs of consecutive rules without
  user-dependent conditions are folded into interned "segments" whose outcome (the first matching
  rule's actions) is memoised too. A user with the default rules thus costs a handful of dict
  lookups plus the few user-dependent checks (mention list, state_key, display name and localpart
  in the body, each a substring test before any boundary check).
* `actions_for` accepts the event dict itself: the last prepared event is cached by identity
  together with the room-level inputs, so calling it for every member in a row prepares the event
  once. Do not mutate the event dict between those calls (or pass `prepare_event(...)` explicitly).
"""

from __future__ import annotations

import json
import operator
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from homeserver.core.paths import split_path
from homeserver.push.default_rules import LEGACY_MENTION_RULES
from homeserver.push.model import KINDS, USER_ID, USER_LOCALPART, PushRule
from homeserver.push.rules import effective_rules

__all__ = [
    "PreparedEvent",
    "PushRuleEvaluator",
    "default_evaluator",
    "evaluate_members",
    "glob_matches",
    "lookup",
    "prepare_event",
]

_MISSING: Any = object()  # absent property
_UNSET: Any = object()  # nothing cached yet
_NO_MATCH: Any = object()  # a segment where no rule matched

# Characters that are not word boundaries (spec: everything outside [A-Za-z0-9_] is one).
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")

_HISTORICAL_ACTIONS = frozenset({"dont_notify", "coalesce"})
_DEFAULT_NOTIFICATION_LEVEL = 50
_CACHE_LIMIT = 50_000


# -- dotted paths ---------------------------------------------------------------------------------


def lookup(event: Any, path: tuple[str, ...]) -> Any:
    """The value at `path`, or the module's `_MISSING` sentinel when absent."""
    value = event
    for part in path:
        if type(value) is not dict:
            return _MISSING
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def is_missing(value: Any) -> bool:
    return value is _MISSING


# -- globs ----------------------------------------------------------------------------------------


def _word_find(haystack: str, needle: str) -> bool:
    """`needle` occurs in `haystack` with a word boundary (or the ends) on both sides.
    Both are already lower-cased."""
    n = len(needle)
    end_of_hay = len(haystack)
    start = haystack.find(needle)
    while start != -1:
        end = start + n
        if (start == 0 or haystack[start - 1] not in _WORD) and (
            end == end_of_hay or haystack[end] not in _WORD
        ):
            return True
        start = haystack.find(needle, start + 1)
    return False


def _before_ok(text: str, i: int) -> bool:
    return i == 0 or text[i - 1] not in _WORD


def _after_ok(text: str, j: int) -> bool:
    return j == len(text) or text[j] not in _WORD


class _Piece:
    """A part of a glob between `*`s (lower-cased), possibly with `?`s."""

    __slots__ = ("regex", "size", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.size = len(text)
        self.regex = (
            re.compile("".join("." if ch == "?" else re.escape(ch) for ch in text), re.DOTALL)
            if "?" in text
            else None
        )

    def at(self, s: str, i: int) -> bool:
        if self.regex is None:
            return s.startswith(self.text, i)
        return self.regex.match(s, i) is not None

    def find(self, s: str, start: int, end: int | None = None) -> int:
        """Leftmost occurrence lying within s[start:end], or -1."""
        stop = len(s) if end is None else end
        if self.regex is None:
            return s.find(self.text, start, stop)
        m = self.regex.search(s, start, stop)
        return -1 if m is None else m.start()


class _Glob:
    """A compiled glob: case-insensitive, whole value (or, in word mode, any substring bounded by
    word boundaries).

    Matching places the parts between `*`s leftmost-first, which is exact for globs and linear
    in the value (a regex translation backtracks polynomially on patterns such as `*a*a*a*b`,
    and patterns come from users)."""

    __slots__ = ("literal", "lower", "pattern", "pieces", "word")

    def __init__(self, pattern: str, word: bool) -> None:
        self.pattern = pattern
        self.word = word
        self.lower = pattern.lower()
        self.literal = "*" not in pattern and "?" not in pattern
        self.pieces = tuple(_Piece(p) for p in self.lower.split("*"))

    def match(self, value: str) -> bool:
        """Whole-value match (event_match on any key but content.body)."""
        if self.literal:
            return value == self.pattern or value.lower() == self.lower
        s = value.lower()
        pieces = self.pieces
        first = pieces[0]
        if len(pieces) == 1:
            return len(s) == first.size and first.at(s, 0)
        last = pieces[-1]
        if not first.at(s, 0):
            return False
        pos = first.size
        tail = len(s) - last.size
        if tail < pos:
            return False
        for piece in pieces[1:-1]:
            k = piece.find(s, pos, tail)
            if k == -1:
                return False
            pos = k + piece.size
        return last.at(s, tail)

    def search_words(self, body: _Body) -> bool:
        """Word-bounded substring match in a body."""
        if self.literal:
            return _needle(self.pattern).in_body(body)
        s = body.lower
        pieces = self.pieces
        first = pieces[0]
        if len(pieces) == 1:  # `?`s only
            i = first.find(s, 0)
            while i != -1:
                if _before_ok(s, i) and _after_ok(s, i + first.size):
                    return True
                i = first.find(s, i + 1)
            return False
        # The earliest bounded start of the first part leaves the most room for the rest.
        i = first.find(s, 0)
        while i != -1 and not _before_ok(s, i):
            i = first.find(s, i + 1)
        if i == -1:
            return False
        pos = i + first.size
        for piece in pieces[1:-1]:
            k = piece.find(s, pos)
            if k == -1:
                return False
            pos = k + piece.size
        last = pieces[-1]
        if last.size == 0:
            return True  # the end of the value is a boundary
        k = last.find(s, pos)
        while k != -1:
            if _after_ok(s, k + last.size):
                return True
            k = last.find(s, k + 1)
        return False


_GLOBS: dict[tuple[str, bool], _Glob] = {}


def _glob(pattern: str, word: bool) -> _Glob:
    key = (pattern, word)
    glob = _GLOBS.get(key)
    if glob is None:
        if len(_GLOBS) > _CACHE_LIMIT:
            _GLOBS.clear()
        glob = _GLOBS[key] = _Glob(pattern, word)
    return glob


def glob_matches(pattern: str, value: str, *, words: bool = False) -> bool:
    """Spec glob matching (for tests and one-off use)."""
    g = _glob(pattern, words)
    return g.search_words(_Body(value)) if words else g.match(value)


_WORD_RUN = re.compile(r"[A-Za-z0-9_]+")


class _Body:
    """`content.body`, lower-cased, and (on first need) its set of maximal runs of word
    characters: a needle made only of word characters matches exactly when it is one of them."""

    __slots__ = ("lower", "text", "words")

    def __init__(self, text: str) -> None:
        self.text = text
        self.lower = text.lower()
        self.words: frozenset[str] | None = None

    def word_set(self) -> frozenset[str]:
        words = self.words
        if words is None:
            words = self.words = frozenset(_WORD_RUN.findall(self.lower))
        return words


class _Needle:
    """A literal searched for as whole words of a body (display names, localparts, globs without
    wildcards). Every maximal word run of the needle must be a word of the body for a bounded
    match to exist, which rules out most bodies with a set lookup before any scan."""

    __slots__ = ("lower", "simple", "tokens")

    def __init__(self, text: str) -> None:
        self.lower = text.lower()
        runs = _WORD_RUN.findall(self.lower)
        self.simple = len(runs) == 1 and runs[0] == self.lower
        self.tokens = tuple(set(runs))

    def in_body(self, body: _Body) -> bool:
        words = body.word_set()
        if self.simple:
            return self.lower in words
        for token in self.tokens:
            if token not in words:
                return False
        return _word_find(body.lower, self.lower)


_NEEDLES: dict[str, _Needle] = {}
_LOCALPART_NEEDLES: dict[str, _Needle] = {}
_LOWER: dict[str, str] = {}


def _needle(text: str) -> _Needle:
    needle = _NEEDLES.get(text)
    if needle is None:
        if len(_NEEDLES) > _CACHE_LIMIT:
            _NEEDLES.clear()
        needle = _NEEDLES[text] = _Needle(text)
    return needle


def _localpart_needle(user_id: str) -> _Needle:
    needle = _LOCALPART_NEEDLES.get(user_id)
    if needle is None:
        if len(_LOCALPART_NEEDLES) > _CACHE_LIMIT:
            _LOCALPART_NEEDLES.clear()
        colon = user_id.find(":")
        needle = _LOCALPART_NEEDLES[user_id] = _Needle(user_id[1:colon] if colon > 0 else user_id[1:])
    return needle


def _lower(text: str) -> str:
    lowered = _LOWER.get(text)
    if lowered is None:
        if len(_LOWER) > _CACHE_LIMIT:
            _LOWER.clear()
        lowered = _LOWER[text] = text.lower()
    return lowered


# -- the prepared event ---------------------------------------------------------------------------


def _required_level(levels: Mapping[str, Any] | None, key: str) -> int:
    if not levels:
        return _DEFAULT_NOTIFICATION_LEVEL
    value = levels.get(key, _DEFAULT_NOTIFICATION_LEVEL)
    if type(value) is int:
        return value
    if isinstance(value, str):  # string levels exist in old room versions
        try:
            return int(value.strip())
        except ValueError:
            pass
    return _DEFAULT_NOTIFICATION_LEVEL


class PreparedEvent:
    """An event plus its room-level inputs, with per-event caches shared by all members' checks."""

    __slots__ = (
        "_values",
        "body",
        "event",
        "has_mentions",
        "memo",
        "notification_power_levels",
        "room_member_count",
        "sender",
        "sender_power_level",
    )

    def __init__(
        self,
        event: Mapping[str, Any],
        room_member_count: int,
        sender_power_level: int | None,
        notification_power_levels: Mapping[str, Any] | None,
    ) -> None:
        self.event = event
        self.room_member_count = room_member_count
        self.sender_power_level = sender_power_level
        self.notification_power_levels = notification_power_levels
        self.sender = event.get("sender")
        content = event.get("content")
        # Intentional mentions (spec v1.7): the legacy body-based mention rules stand aside.
        self.has_mentions = type(content) is dict and "m.mentions" in content
        body = content.get("body") if type(content) is dict else None
        self.body = _Body(body) if type(body) is str else None
        # Per-event results shared by all members: condition sets, segments, evaluator plans.
        self.memo: dict[Any, Any] = {}
        self._values: dict[str, Any] = {}

    def value(self, key: str, path: tuple[str, ...]) -> Any:
        value = self._values.get(key, _UNSET)
        if value is _UNSET:
            value = self._values[key] = lookup(self.event, path)
        return value


_last_prepared: PreparedEvent | None = None


def prepare_event(
    event: Mapping[str, Any],
    *,
    room_member_count: int = 0,
    sender_power_level: int | None = 0,
    notification_power_levels: Mapping[str, Any] | None = None,
) -> PreparedEvent:
    """Prepare an event for evaluation against many users' rules."""
    return PreparedEvent(event, room_member_count, sender_power_level, notification_power_levels)


def _prepared(
    event: Mapping[str, Any],
    room_member_count: int,
    sender_power_level: int | None,
    notification_power_levels: Mapping[str, Any] | None,
) -> PreparedEvent:
    """A new prepared event, remembered for the calls for the next members (see `actions_for`)."""
    global _last_prepared
    p = PreparedEvent(event, room_member_count, sender_power_level, notification_power_levels)
    _last_prepared = p
    return p


# -- conditions -----------------------------------------------------------------------------------


# A user-dependent condition bound to one event: `check(user_id, display_name) -> bool`.
UserCheck = Callable[[str, "str | None"], bool]


class _Cond:
    """A compiled condition. User-independent ones implement `test`; user-dependent ones set
    `user_dependent` and implement `bind`: the event-specific part is done once per event and
    the returned check does the rest per user (None: it cannot match this event for anyone)."""

    __slots__ = ("__weakref__",)
    user_dependent = False

    def test(self, ev: PreparedEvent) -> bool:
        raise NotImplementedError

    def bind(self, ev: PreparedEvent) -> UserCheck | None:
        raise NotImplementedError

    def bound(self, ev: PreparedEvent) -> UserCheck | None:
        """`bind`, memoised on the event (evaluators share conditions, hence checks)."""
        key = ("bound", self)
        memo = ev.memo
        if key in memo:
            check: UserCheck | None = memo[key]
            return check
        check = memo[key] = self.bind(ev)
        return check


class _Never(_Cond):
    """Unknown or malformed conditions never match (spec), disabling their rule."""

    __slots__ = ()

    def test(self, ev: PreparedEvent) -> bool:
        return False


NEVER = _Never()


class _EventMatch(_Cond):
    __slots__ = ("glob", "key", "path")

    def __init__(self, key: str, pattern: str) -> None:
        self.key = key
        self.path = split_path(key)
        self.glob = _glob(pattern, False)

    def test(self, ev: PreparedEvent) -> bool:
        value = ev.value(self.key, self.path)
        return type(value) is str and self.glob.match(value)


class _BodyMatch(_Cond):
    """event_match on `content.body`: word-bounded substring match (also content rules)."""

    __slots__ = ("glob",)

    def __init__(self, pattern: str) -> None:
        self.glob = _glob(pattern, True)

    def test(self, ev: PreparedEvent) -> bool:
        body = ev.body
        return body is not None and self.glob.search_words(body)


def _same_scalar(a: Any, b: Any) -> bool:
    # Exact match without casts: True is not 1, 1.0 is not 1.
    return type(a) is type(b) and a == b


class _PropertyIs(_Cond):
    __slots__ = ("key", "path", "value")

    def __init__(self, key: str, value: Any) -> None:
        self.key = key
        self.path = split_path(key)
        self.value = value

    def test(self, ev: PreparedEvent) -> bool:
        return _same_scalar(ev.value(self.key, self.path), self.value)


class _PropertyContains(_Cond):
    __slots__ = ("key", "path", "value")

    def __init__(self, key: str, value: Any) -> None:
        self.key = key
        self.path = split_path(key)
        self.value = value

    def test(self, ev: PreparedEvent) -> bool:
        array = ev.value(self.key, self.path)
        if type(array) is not list:
            return False
        wanted = self.value
        if type(wanted) is str:
            return wanted in array  # str only equals str
        return any(_same_scalar(item, wanted) for item in array)


_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")


class _MemberCount(_Cond):
    __slots__ = ("compare", "number")

    def __init__(self, compare: Callable[[int, int], bool], number: int) -> None:
        self.compare = compare
        self.number = number

    def test(self, ev: PreparedEvent) -> bool:
        return self.compare(ev.room_member_count, self.number)


class _SenderPermission(_Cond):
    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def test(self, ev: PreparedEvent) -> bool:
        level = ev.sender_power_level
        return level is not None and level >= _required_level(ev.notification_power_levels, self.key)


class _NoMentions(_Cond):
    """Pseudo-condition of the legacy mention rules: the event has no `m.mentions`."""

    __slots__ = ()

    def test(self, ev: PreparedEvent) -> bool:
        return not ev.has_mentions


NO_MENTIONS = _NoMentions()


# User-dependent conditions.


class _UserIdMatch(_Cond):
    """event_match of a property against the user's id (`.m.rule.invite_for_me`)."""

    __slots__ = ("key", "path")
    user_dependent = True

    def __init__(self, key: str) -> None:
        self.key = key
        self.path = split_path(key)

    def bind(self, ev: PreparedEvent) -> UserCheck | None:
        value = ev.value(self.key, self.path)
        if type(value) is not str:
            return None
        lowered = value.lower()
        return lambda user_id, display_name: user_id == value or _lower(user_id) == lowered


class _UserIdInArray(_Cond):
    """event_property_contains of the user's id (`.m.rule.is_user_mention`)."""

    __slots__ = ("key", "path")
    user_dependent = True

    def __init__(self, key: str) -> None:
        self.key = key
        self.path = split_path(key)

    def bind(self, ev: PreparedEvent) -> UserCheck | None:
        array = ev.value(self.key, self.path)
        if type(array) is not list:
            return None
        ids = frozenset(item for item in array if type(item) is str)
        if not ids:
            return None
        return lambda user_id, display_name: user_id in ids


class _LocalpartInBody(_Cond):
    """`.m.rule.contains_user_name`: the user's localpart as a word of the body."""

    __slots__ = ()
    user_dependent = True

    def bind(self, ev: PreparedEvent) -> UserCheck | None:
        body = ev.body
        if body is None:
            return None
        words = body.word_set()
        cache = _LOCALPART_NEEDLES

        def check(user_id: str, display_name: str | None) -> bool:
            needle = cache.get(user_id) or _localpart_needle(user_id)
            return needle.lower in words if needle.simple else needle.in_body(body)

        return check


class _DisplayNameInBody(_Cond):
    """contains_display_name: the user's room display name as words of the body (literally)."""

    __slots__ = ()
    user_dependent = True

    def bind(self, ev: PreparedEvent) -> UserCheck | None:
        body = ev.body
        if body is None:
            return None

        words = body.word_set()
        cache = _NEEDLES

        def check(user_id: str, display_name: str | None) -> bool:
            if not display_name:
                return False
            needle = cache.get(display_name) or _needle(display_name)
            return needle.lower in words if needle.simple else needle.in_body(body)

        return check


LOCALPART_IN_BODY = _LocalpartInBody()
DISPLAY_NAME_IN_BODY = _DisplayNameInBody()

_CONDS: weakref.WeakValueDictionary[Any, _Cond] = weakref.WeakValueDictionary()


def _interned(key: Any, build: Callable[[], _Cond]) -> _Cond:
    try:
        cond = _CONDS.get(key)
    except TypeError:  # unhashable parameters: not a valid condition
        return NEVER
    if cond is None:
        cond = build()
        _CONDS[key] = cond
    return cond


def _scalar(value: Any) -> bool:
    return value is None or type(value) in (str, int, bool)


def compile_condition(condition: Any, *, trusted: bool = False) -> _Cond:
    """Compile one condition object; `trusted` (server-default rules) allows templates."""
    if type(condition) is not dict:
        return NEVER
    kind = condition.get("kind")
    key = condition.get("key")
    if kind == "event_match":
        if type(key) is not str:
            return NEVER
        pattern = condition.get("pattern")
        if type(pattern) is str:
            if key == "content.body":
                return _interned(("body", pattern), lambda: _BodyMatch(pattern))
            return _interned(("match", key, pattern), lambda: _EventMatch(key, pattern))
        if trusted and "pattern" not in condition:
            pattern_type = condition.get("pattern_type")
            if pattern_type == USER_ID and key != "content.body":
                return _interned(("user_id_match", key), lambda: _UserIdMatch(key))
            if pattern_type == USER_LOCALPART and key == "content.body":
                return LOCALPART_IN_BODY
        return NEVER
    if kind == "event_property_is" or kind == "event_property_contains":
        if type(key) is not str:
            return NEVER
        if "value" not in condition:
            if trusted and kind == "event_property_contains" and condition.get("value_type") == USER_ID:
                return _interned(("user_id_in", key), lambda: _UserIdInArray(key))
            return NEVER
        value = condition["value"]
        if not _scalar(value):
            return NEVER
        if type(value) is int and not -(2**53) < value < 2**53:
            return NEVER
        cls = _PropertyIs if kind == "event_property_is" else _PropertyContains
        return _interned((kind, key, type(value).__name__, value), lambda: cls(key, value))
    if kind == "room_member_count":
        spec = condition.get("is")
        if type(spec) is not str:
            return NEVER
        m = _MEMBER_COUNT.fullmatch(spec)
        if m is None:
            return NEVER
        op, number = m.group(1) or "==", int(m.group(2))
        return _interned(("count", op, number), lambda: _MemberCount(_COMPARE[op], number))
    if kind == "sender_notification_permission":
        if type(key) is not str:
            return NEVER
        return _interned(("sender_perm", key), lambda: _SenderPermission(key))
    if kind == "contains_display_name":
        return DISPLAY_NAME_IN_BODY
    return NEVER


# -- rules, segments, evaluator -------------------------------------------------------------------


class _CondSet:
    """An interned conjunction of user-independent conditions (memoised per event)."""

    __slots__ = ("__weakref__", "conds")

    def __init__(self, conds: tuple[_Cond, ...]) -> None:
        self.conds = conds

    def evaluate(self, ev: PreparedEvent) -> bool:
        for cond in self.conds:
            if not cond.test(ev):
                return False
        return True


_CONDSETS: weakref.WeakValueDictionary[tuple[_Cond, ...], _CondSet] = weakref.WeakValueDictionary()


def _condset(conds: tuple[_Cond, ...]) -> _CondSet | None:
    if not conds:
        return None
    cs = _CONDSETS.get(conds)
    if cs is None:
        cs = _CONDSETS[conds] = _CondSet(conds)
    return cs


_ACTIONS: dict[str, list[Any]] = {}


def _actions(actions: Iterable[Any]) -> list[Any]:
    """Actions without the historical ones, interned so that rules share one list."""
    cleaned = [a for a in actions if not (type(a) is str and a in _HISTORICAL_ACTIONS)]
    try:
        key = json.dumps(cleaned, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return cleaned
    shared = _ACTIONS.get(key)
    if shared is None:
        if len(_ACTIONS) > _CACHE_LIMIT:
            _ACTIONS.clear()
        shared = _ACTIONS[key] = cleaned
    return shared


class _Segment:
    """Consecutive rules with only user-independent conditions: the first match's actions (or
    `_NO_MATCH`) are the same for every user, so they are memoised per event."""

    __slots__ = ("__weakref__", "entries")

    def __init__(self, entries: tuple[tuple[_CondSet | None, list[Any]], ...]) -> None:
        self.entries = entries

    def evaluate(self, ev: PreparedEvent) -> Any:
        memo = ev.memo
        for cs, actions in self.entries:
            if cs is None:
                return actions
            ok = memo.get(cs)
            if ok is None:
                ok = memo[cs] = cs.evaluate(ev)
            if ok:
                return actions
        return _NO_MATCH


_SEGMENTS: weakref.WeakValueDictionary[Any, _Segment] = weakref.WeakValueDictionary()


def _segment(entries: list[tuple[_CondSet | None, list[Any]]]) -> _Segment:
    key = tuple((cs, id(actions)) for cs, actions in entries)
    seg = _SEGMENTS.get(key)
    if seg is None:
        seg = _SEGMENTS[key] = _Segment(tuple(entries))
    return seg


class _AllUser(_Cond):
    """Several user-dependent conditions of one rule, all required."""

    __slots__ = ("conds",)
    user_dependent = True

    def __init__(self, conds: tuple[_Cond, ...]) -> None:
        self.conds = conds

    def bind(self, ev: PreparedEvent) -> UserCheck | None:
        checks = []
        for cond in self.conds:
            check = cond.bound(ev)
            if check is None:
                return None
            checks.append(check)
        return lambda user_id, display_name: all(c(user_id, display_name) for c in checks)


class _UserRule:
    """A rule with user-dependent conditions: a memoised pre-check of its user-independent
    conditions, then one user check."""

    __slots__ = ("actions", "check", "pre")

    def __init__(self, pre: _CondSet | None, dep: tuple[_Cond, ...], actions: list[Any]) -> None:
        self.pre = pre
        self.check: _Cond = dep[0] if len(dep) == 1 else _AllUser(dep)
        self.actions = actions


def _rule_conditions(rule: PushRule) -> list[_Cond] | None:
    """Compiled conditions of a rule, or None when it can never match."""
    trusted = rule.default
    kind = rule.kind
    conds: list[_Cond]
    if kind == "content":
        if rule.pattern is not None:
            body_match = {"kind": "event_match", "key": "content.body", "pattern": rule.pattern}
            conds = [compile_condition(body_match)]
        elif trusted and rule.pattern_type == USER_LOCALPART:
            conds = [LOCALPART_IN_BODY]
        else:
            return None
    elif kind == "room":
        conds = [compile_condition({"kind": "event_match", "key": "room_id", "pattern": rule.rule_id})]
    elif kind == "sender":
        conds = [compile_condition({"kind": "event_match", "key": "sender", "pattern": rule.rule_id})]
    else:
        conds = [compile_condition(c, trusted=trusted) for c in (rule.conditions or ())]
    if any(c is NEVER for c in conds):
        return None
    if rule.rule_id in LEGACY_MENTION_RULES:  # ids with a leading dot are server-default ones
        conds.insert(0, NO_MENTIONS)
    return conds


def _normalise(rules: Iterable[PushRule] | Mapping[str, Any]) -> Iterable[PushRule]:
    if not isinstance(rules, Mapping):
        return rules
    ruleset = rules.get("global", rules)
    out = []
    for kind in KINDS:
        for raw in ruleset.get(kind) or ():
            if type(raw) is not dict or type(raw.get("rule_id")) is not str:
                continue
            out.append(
                PushRule(
                    kind,
                    raw["rule_id"],
                    raw["actions"] if type(raw.get("actions")) is list else [],
                    conditions=raw.get("conditions") if kind in ("override", "underride") else None,
                    pattern=raw.get("pattern") if type(raw.get("pattern")) is str else None,
                    default=False,  # client-shaped input carries resolved values, never templates
                    enabled=raw.get("enabled", True) is not False,
                )
            )
    return out


class PushRuleEvaluator:
    """One user's compiled rules. Build once per rule set and reuse: it holds no per-user or
    per-event state, so users who never changed their rules share one (`default_evaluator()`).

    `rules` is the effective rule list from `rules.effective_rules` (in evaluation order), or a
    spec-shaped ruleset (`{"global": {"override": [...], ...}}` or the inner object).

    Per event, an evaluator first reduces its steps to a plan: the user-independent outcome of
    every segment and pre-check is known, leaving only the user checks that can still matter and
    the actions that apply when none of them matches. The plan is memoised on the event, so for
    the members sharing an evaluator all that is left is those few user checks.
    """

    __slots__ = ("rule_count", "steps")

    def __init__(self, rules: Iterable[PushRule] | Mapping[str, Any]) -> None:
        steps: list[_Segment | _UserRule] = []
        pending: list[tuple[_CondSet | None, list[Any]]] = []
        count = 0
        for rule in _normalise(rules):
            if not rule.enabled:
                continue
            conds = _rule_conditions(rule)
            if conds is None:
                continue
            count += 1
            actions = _actions(rule.actions)
            indep = tuple(c for c in conds if not c.user_dependent)
            dep = tuple(c for c in conds if c.user_dependent)
            if not dep:
                pending.append((_condset(indep), actions))
                if not indep:
                    break  # always matches: nothing after it can be reached
                continue
            if pending:
                steps.append(_segment(pending))
                pending = []
            steps.append(_UserRule(_condset(indep), dep, actions))
        if pending:
            steps.append(_segment(pending))
        self.steps: tuple[_Segment | _UserRule, ...] = tuple(steps)
        self.rule_count = count

    def plan(self, ev: PreparedEvent) -> tuple[tuple[tuple[UserCheck, list[Any]], ...], list[Any] | None]:
        """`(user checks with their actions, actions when none matches)` for this event."""
        memo = ev.memo
        checks: list[tuple[UserCheck, list[Any]]] = []
        for step in self.steps:
            if isinstance(step, _Segment):
                result = memo.get(step)
                if result is None:
                    result = memo[step] = step.evaluate(ev)
                if result is not _NO_MATCH:
                    return tuple(checks), result
                continue
            pre = step.pre
            if pre is not None:
                ok = memo.get(pre)
                if ok is None:
                    ok = memo[pre] = pre.evaluate(ev)
                if not ok:
                    continue
            check = step.check.bound(ev)
            if check is not None:
                checks.append((check, step.actions))
        return tuple(checks), None

    def actions_for(
        self,
        event: Mapping[str, Any] | PreparedEvent,
        *,
        user_id: str,
        room_member_count: int = 0,
        display_name: str | None = None,
        sender_power_level: int | None = 0,
        notification_power_levels: Mapping[str, Any] | None = None,
    ) -> list[Any] | None:
        """The matching rule's actions for `user_id` (shared list: do not mutate), or None.

        `room_member_count` is the number of joined members, `display_name` the user's display
        name in the room, `sender_power_level` the sender's power level and
        `notification_power_levels` the `notifications` object of the room's power levels. With a
        `PreparedEvent` the room-level keyword arguments are taken from it instead.
        """
        if isinstance(event, PreparedEvent):
            ev = event
        else:
            last = _last_prepared
            if (
                last is not None
                and last.event is event
                and last.room_member_count == room_member_count
                and last.sender_power_level == sender_power_level
                and (
                    last.notification_power_levels is notification_power_levels
                    or last.notification_power_levels == notification_power_levels
                )
            ):
                ev = last
            else:
                ev = _prepared(event, room_member_count, sender_power_level, notification_power_levels)
        if ev.sender == user_id:
            return None  # never notify users of their own events
        plan = ev.memo.get(self)
        if plan is None:
            plan = ev.memo[self] = self.plan(ev)
        for check, actions in plan[0]:
            if check(user_id, display_name):
                return actions
        return plan[1]


def evaluate_members(
    event: Mapping[str, Any],
    members: Iterable[tuple[str, str | None, PushRuleEvaluator]],
    *,
    room_member_count: int,
    sender_power_level: int | None,
    notification_power_levels: Mapping[str, Any] | None,
) -> list[tuple[str, list[Any]]]:
    """`(user_id, actions)` for every member a rule matched, from `(user_id, display name,
    evaluator)` triples: the loop the persister runs for an event."""
    ev = PreparedEvent(event, room_member_count, sender_power_level, notification_power_levels)
    out = []
    for user_id, display_name, evaluator in members:
        actions = evaluator.actions_for(ev, user_id=user_id, display_name=display_name)
        if actions is not None:
            out.append((user_id, actions))
    return out


def default_evaluator() -> PushRuleEvaluator:
    """The evaluator for users who never changed their rules (shared by all of them)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PushRuleEvaluator(effective_rules())
    return _DEFAULT


_DEFAULT: PushRuleEvaluator | None = None
