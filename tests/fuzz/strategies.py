"""Hypothesis strategies for whole client-server requests, guided by the spec's schemas.

Each request is drawn in one of two modes: *conforming* (every value follows its schema, so the
request gets past validation and reaches the service code) or *mutated* (any value in the tree may
be replaced by JSON of the wrong type, a required field may go missing, the body may not be JSON at
all). Strings that name things (user, room and event ids, device ids, aliases, event types, media
ids, UIA sessions) are drawn partly from :class:`Seeds`, the real ids of the fuzzing user's world,
so that path parameters often point at something that exists and the request goes deep.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

from .spec_ops import Operation, Parameter

JSON = Any
_MAX_DEPTH = 6

# Values that broke parsers and SQL before: boundaries, odd unicode, path tricks.
NASTY_STRINGS = [
    "",
    " ",
    "null",
    "0",
    "-1",
    "true",
    "{}",
    "[]",
    "%",
    "%2F",
    "../..",
    "/",
    "?",
    "#",
    "'",
    '"',
    "\\",
    "' OR 1=1 --",
    "%s%s%s",
    "\u202e",
    "\ud800",
    "😀",
    "한국어",
    "@",
    "!",
    "$",
    "#:",
    "@:",
    "!x:",
    "@a:b:c",
    "a" * 300,
    "x" * 5000,
    "http://[::1",
    "http://",
    "https://example.org/_matrix/push/v1/notify",
    "mxc://",
    "mxc://localhost/",
    "mxc://a/b/c",
    "ed25519:",
    "signed_curve25519:AAAA",
    "m.login.password",
    "m.id.user",
]
# Keys that handlers look up in free-form objects (event content, signed JSON, auth data...).
FREEFORM_KEYS = [
    "signatures",
    "keys",
    "user_id",
    "device_id",
    "url",
    "content",
    "type",
    "state_key",
    "membership",
    "body",
    "msgtype",
    "m.relates_to",
    "m.new_content",
    "m.mentions",
    "event_id",
    "rel_type",
    "key",
    "algorithm",
    "session",
    "session_data",
    "auth_data",
    "public_key",
    "usage",
    "users",
    "events",
    "via",
    "allow",
    "alias",
    "alt_aliases",
    "join_rule",
    "order",
    "format",
    "thread_id",
    "identifier",
    "password",
    "limit",
    "unsigned",
]
NASTY_INTS = [
    -1,
    0,
    1,
    2**31 - 1,
    2**31,
    2**53 - 1,
    2**53,
    -(2**53),
    2**63 - 1,
    -(2**63),
    2**63,
    2**64,
    -(2**64),
    10**20,
]
NUMERIC_STRINGS = [
    "99999999999999999999",
    "-99999999999999999999",
    "9223372036854775808",
    "-0",
    "1e3",
    " 1",
    "0x10",
    "1_000",
    "+5",
    "٣",
    "NaN",
    "-1",
    "0",
]


@dataclass
class Seeds:
    """Real ids from the running server, kept current by the world as it changes."""

    server_name: str = "localhost"
    user_ids: list[str] = field(default_factory=list)
    room_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    device_ids: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    media_ids: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    passwords: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # sync/pagination tokens
    filter_ids: list[str] = field(default_factory=list)
    event_types: list[str] = field(
        default_factory=lambda: [
            "m.room.message",
            "m.room.name",
            "m.room.topic",
            "m.room.member",
            "m.room.power_levels",
            "m.room.join_rules",
            "m.room.create",
            "m.room.encryption",
            "m.room.history_visibility",
            "m.room.redaction",
            "m.reaction",
            "m.space.child",
            "m.direct",
            "m.push_rules",
            "m.fully_read",
            "m.tag",
            "org.example.custom",
        ]
    )

    def kind(self, name: str) -> list[str]:
        values: list[str] = getattr(self, name)
        return values

    def pick(self, name: str, index: int) -> str:
        values = self.kind(name)
        if not values:
            return ""
        return values[index % len(values)]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Pick a strategy with the given weights (``st.one_of`` merges equal branches, so repeating a
    branch there does not weigh it)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


# --------------------------------------------------------------------------- strings by meaning

_ID_KINDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(^|_)user_?id$|^userid$|^user$|^mxid$|^sender$", re.I), "user_ids"),
    (re.compile(r"room_?id_?or_?alias", re.I), "room_or_alias"),
    (re.compile(r"room_?alias|^alias$", re.I), "aliases"),
    (re.compile(r"(^|_)room_?id$|^room$|^rooms$|^via_room$", re.I), "room_ids"),
    (re.compile(r"event_?id$|^event_id$|^from_event$", re.I), "event_ids"),
    (re.compile(r"device_?id$|^device$", re.I), "device_ids"),
    (re.compile(r"media_?id$", re.I), "media_ids"),
    (re.compile(r"server_?name$|^server$|^via$", re.I), "server_names"),
    (re.compile(r"^session$", re.I), "sessions"),
    (re.compile(r"password$", re.I), "passwords"),
    (re.compile(r"^(since|from|to|next_batch|prev_batch|next_token|end|start)$", re.I), "tokens"),
    (re.compile(r"(^|_)type$|^eventType$", re.I), "event_types"),
    (re.compile(r"^filter(_?id)?$", re.I), "filter_ids"),
]
_FORMAT_KINDS = {
    "mx-user-id": "user_ids",
    "mx-room-id": "room_ids",
    "mx-event-id": "event_ids",
    "mx-room-alias": "aliases",
    "mx-server-name": "server_names",
    "mx-mxc-uri": "mxc",
}


def _kind_for(name: str, schema: dict[str, Any]) -> str | None:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMAT_KINDS:
        return _FORMAT_KINDS[fmt]
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        for prefix, kind in (
            ("^@", "user_ids"),
            ("^!", "room_ids"),
            ("^\\$", "event_ids"),
            ("^#", "aliases"),
        ):
            if pattern.startswith(prefix):
                return kind
    for regex, kind in _ID_KINDS:
        if regex.search(name):
            return kind
    return None


def any_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY_STRINGS),
        st.sampled_from(NUMERIC_STRINGS),
        st.text(max_size=20),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._=-/:@!$#+", max_size=30),
    )


def seeded_text(seeds: Seeds, kind: str | None) -> st.SearchStrategy[str]:
    """Mostly a real id of ``kind``, sometimes a near miss or arbitrary text."""
    if kind is None:
        return any_text()

    def real(i: int) -> str:
        if kind == "room_or_alias":
            return seeds.pick("room_ids" if i % 3 else "aliases", i // 3)
        if kind == "server_names":
            return [seeds.server_name, "localhost", "example.org", "[::1]:8448", "a" * 300][i % 5]
        if kind == "mxc":
            media = seeds.pick("media_ids", i)
            return f"mxc://{seeds.server_name}/{media}" if media else "mxc://x/y"
        if kind in ("user_ids", "room_ids") and i % 2:
            return seeds.pick(kind, 0)  # the fuzzing user and its main room: most requests need them
        return seeds.pick(kind, i)

    sigil = {"user_ids": "@", "room_ids": "!", "event_ids": "$", "aliases": "#"}.get(kind, "")
    near = st.builds(
        lambda s, t: f"{sigil}{s}:{t}" if sigil else s,
        st.text(max_size=12),
        st.sampled_from([seeds.server_name, "example.org", "", "localhost:99999"]),
    )
    real_st = st.integers(0, 1000).map(real)
    return weighted((6, real_st), (1, near), (1, any_text()))


# --------------------------------------------------------------------------- schema -> strategy


def garbage(depth: int = 0) -> st.SearchStrategy[JSON]:
    """Any JSON value, of any type (for type confusion)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(NASTY_INTS),
        st.integers(-1000, 1000),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(NASTY_STRINGS),
        st.text(max_size=10),
    )
    if depth >= 3:
        return scalars
    return st.one_of(
        scalars,
        st.lists(garbage(depth + 1), max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(FREEFORM_KEYS), st.text(max_size=8)), garbage(depth + 1), max_size=3
        ),
    )


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema.get("allOf") or []:
        if not isinstance(part, dict):
            continue
        part = _merge_all_of(part)
        for key, value in part.items():
            if key == "properties":
                out["properties"] = {**(out.get("properties") or {}), **value}
            elif key == "required":
                out["required"] = sorted({*(out.get("required") or []), *value})
            else:
                out.setdefault(key, value)
    return out


@dataclass
class Generator:
    seeds: Seeds
    mutate: bool  # may replace values by garbage and drop required fields

    def value(self, schema: Any, name: str = "", depth: int = 0) -> st.SearchStrategy[JSON]:
        valid = self._valid(schema if isinstance(schema, dict) else {}, name, depth)
        if not self.mutate or depth == 0:
            return valid
        # One in five values of a mutated request is of the wrong type.
        return weighted((4, valid), (1, garbage(depth)))

    def _valid(self, schema: dict[str, Any], name: str, depth: int) -> st.SearchStrategy[JSON]:
        if "allOf" in schema:
            schema = _merge_all_of(schema)
        if "const" in schema:
            return st.just(schema["const"])
        if schema.get("enum"):
            return st.sampled_from(list(schema["enum"]))
        for key in ("oneOf", "anyOf"):
            options = [o for o in schema.get(key) or [] if isinstance(o, dict)]
            if options:
                base = {k: v for k, v in schema.items() if k != key}
                return st.one_of(
                    [self._valid(_merge_all_of({"allOf": [base, o]}), name, depth) for o in options]
                )
        types = schema.get("type")
        if isinstance(types, list):
            return st.one_of([self._valid({**schema, "type": t}, name, depth) for t in types])
        if types is None:
            if "properties" in schema or "additionalProperties" in schema or "patternProperties" in schema:
                types = "object"
            elif "items" in schema:
                types = "array"
            else:
                return garbage(depth + 2) if depth < _MAX_DEPTH else st.none()
        if depth >= _MAX_DEPTH:
            return st.just({} if types == "object" else [] if types == "array" else None)
        maker: Callable[[dict[str, Any], str, int], st.SearchStrategy[JSON]] = getattr(
            self, f"_{types}", self._unknown
        )
        return maker(schema, name, depth)

    def _unknown(self, schema: dict[str, Any], name: str, depth: int) -> st.SearchStrategy[JSON]:
        return garbage(depth)

    def _null(self, schema: dict[str, Any], name: str, depth: int) -> st.SearchStrategy[JSON]:
        return st.none()

    def _boolean(self, schema: dict[str, Any], name: str, depth: int) -> st.SearchStrategy[JSON]:
        return st.booleans()

    def _integer(self, schema: dict[str, Any], name: str, depth: int) -> st.SearchStrategy[JSON]:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if "timeout" in name.lower():
            return st.integers(0, 50)
        bounded = st.integers(
            int(lo) if isinstance(lo, int | float) else -(2**53) + 1,
            int(hi) if isinstance(hi, int | float) else 2**53 - 1,
        )
        small = st.integers(
            int(lo) if isinstance(lo, int | float) else -5, int(hi) if isinstance(hi, int | float) else 100
        )
        if self.mutate:
            return st.one_of(small, bounded, st.sampled_from(NASTY_INTS))
        return st.one_of(small, bounded)

    def _number(self, schema: dict[str, Any], name: str, depth: int) -> st.SearchStrategy[JSON]:
        return st.one_of(self._integer(schema, name, depth), st.floats(-1e9, 1e9))

    def _string(self, schema: dict[str, Any], name: str, depth: int) -> st.SearchStrategy[JSON]:
        return seeded_text(self.seeds, _kind_for(name, schema))

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> st.SearchStrategy[JSON]:
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        min_size = int(schema.get("minItems", 0) or 0)
        if self.mutate:
            min_size = 0
        return st.lists(self.value(items, name, depth + 1), min_size=min_size, max_size=max(min_size, 3))

    def _object(self, schema: dict[str, Any], name: str, depth: int) -> st.SearchStrategy[JSON]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = [p for p in schema.get("required") or [] if isinstance(p, str)]
        fixed: dict[str, st.SearchStrategy[JSON]] = {}
        optional: dict[str, st.SearchStrategy[JSON]] = {}
        for prop, sub in props.items():
            strategy = self.value(sub, prop, depth + 1)
            if prop in required and not self.mutate:
                fixed[prop] = strategy
            else:
                optional[prop] = strategy
        for prop in required:
            if prop not in props and not self.mutate:
                fixed[prop] = self.value({}, prop, depth + 1)
        base = st.fixed_dictionaries(fixed, optional=optional)
        extra_schema = schema.get("additionalProperties")
        patterns = schema.get("patternProperties") or {}
        if isinstance(extra_schema, dict) or patterns or (not props and extra_schema is not False):
            value_schema = (
                extra_schema if isinstance(extra_schema, dict) else next(iter(patterns.values()), {})
            )
            key_kind = None
            for pattern in patterns:
                if isinstance(pattern, str) and pattern.startswith(("^@", "^!", "^\\$")):
                    key_kind = {"@": "user_ids", "!": "room_ids", "$": "event_ids"}[pattern[1].lstrip("\\")]
            keys = (
                seeded_text(self.seeds, key_kind)
                if key_kind
                else st.one_of(
                    seeded_text(self.seeds, "user_ids"),
                    seeded_text(self.seeds, "device_ids"),
                    st.sampled_from(FREEFORM_KEYS),
                    any_text(),
                )
            )
            extras = st.dictionaries(keys, self.value(value_schema, "", depth + 1), max_size=3)
            return st.builds(lambda a, b: {**b, **a}, base, extras)
        return base


# --------------------------------------------------------------------------- whole requests


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str  # with query string
    headers: dict[str, str]
    body: bytes | None
    auth: str  # valid | none | bogus

    def describe(self) -> str:
        body = (self.body or b"")[:600].decode("utf-8", "replace")
        return f"{self.method} {self.path} auth={self.auth} body={body}"


def _dumps(value: JSON) -> bytes:
    return json.dumps(value).encode()


def _query_value(value: JSON) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, list):
        return [v for item in value for v in _query_value(item)]
    if isinstance(value, dict):
        return [json.dumps(value)]
    if value is None:
        return [""]
    return [str(value)]


def _path_segment(value: JSON, raw: bool) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if raw:
        return quote(text, safe="/:@!$&'()*+,;=", errors="surrogatepass")
    return quote(text, safe="", errors="surrogatepass")


def _filter_param(gen: Generator) -> st.SearchStrategy[str]:
    filter_json = gen.value(
        {
            "type": "object",
            "properties": {
                "room": {
                    "type": "object",
                    "properties": {
                        "timeline": {"type": "object", "properties": {"limit": {"type": "integer"}}},
                        "rooms": {"type": "array", "items": {"type": "string", "format": "mx-room-id"}},
                    },
                },
                "types": {"type": "array", "items": {"type": "string"}},
                "limit": {"type": "integer"},
                "lazy_load_members": {"type": "boolean"},
                "contains_url": {"type": "boolean"},
            },
        },
        "filter",
        1,
    ).map(json.dumps)
    return st.one_of(filter_json, seeded_text(gen.seeds, "filter_ids"))


def request_strategy(op: Operation, seeds: Seeds) -> st.SearchStrategy[FuzzRequest]:
    """Requests for ``op``: half conforming, half mutated."""
    return st.one_of(
        _request(op, Generator(seeds, mutate=False)), _request(op, Generator(seeds, mutate=True))
    )


def _is_wait(param: Parameter) -> bool:
    """Long-poll and wait-for-upload times (sync `timeout`, media `timeout_ms`)."""
    return param.location == "query" and "timeout" in param.name.lower()


def _path_strategy(param: Parameter, gen: Generator) -> st.SearchStrategy[JSON]:
    """Path parameters stay mostly meaningful even in mutated requests: a garbage room id only
    ever tests the id parser, while the body and query get mutated behind a real one."""
    kind = _kind_for(param.name, param.schema)
    valid = (
        seeded_text(gen.seeds, kind)
        if kind
        else Generator(gen.seeds, mutate=False).value(param.schema, param.name, 1)
    )
    if not gen.mutate:
        return valid
    return weighted((6, valid), (1, garbage(2)))


def _param_strategy(param: Parameter, gen: Generator) -> st.SearchStrategy[JSON]:
    if param.location == "path":
        return _path_strategy(param, gen)
    if _is_wait(param):
        # Always sent and short: without it the server waits its default (30 s for /sync, 20 s
        # for media that is not uploaded yet), which would bound the run by waiting, not by work.
        return st.integers(0, 50)
    if param.location == "query" and param.name == "filter":
        return _filter_param(gen)
    strategy = gen.value(param.schema, param.name, 1)
    if gen.mutate and param.location == "query":
        return weighted((3, strategy), (1, any_text()))
    return strategy


def _request(op: Operation, gen: Generator) -> st.SearchStrategy[FuzzRequest]:
    path_params = {p.name: _param_strategy(p, gen) for p in op.parameters if p.location == "path"}
    query_required = {
        p.name: _param_strategy(p, gen)
        for p in op.parameters
        if p.location == "query" and ((p.required and not gen.mutate) or _is_wait(p))
    }
    query_optional = {
        p.name: _param_strategy(p, gen)
        for p in op.parameters
        if p.location == "query" and not ((p.required and not gen.mutate) or _is_wait(p))
    }
    body: st.SearchStrategy[bytes | None]
    if op.body_content_type == "application/json":
        json_body = gen.value(op.body_schema or {}, "", 0).map(lambda v: _dumps(v))
        if gen.mutate:
            body = weighted(
                (6, json_body),
                (1, garbage().map(lambda v: _dumps(v))),
                (1, st.sampled_from([b"", b"{", b"nope", b"[]", b'{"a":', b"\xff\xfe", b"{}" * 3])),
            )
        else:
            body = json_body
    elif op.body_content_type is not None:
        body = st.binary(max_size=256)
    else:
        body = st.none()
    if op.authenticated:
        auth = st.sampled_from(["valid"] * 18 + ["none", "bogus"]) if gen.mutate else st.just("valid")
    elif op.auth_optional:
        auth = st.sampled_from(["valid", "none"])
    else:
        auth = st.sampled_from(["none"] * 4 + ["valid"])
    content_type = st.just(op.body_content_type or "application/json")
    if op.body_content_type and op.body_content_type != "application/json":
        content_type = st.sampled_from(["image/png", "text/plain", "application/octet-stream", "", "a/b;c=d"])

    def build(
        path_values: dict[str, JSON],
        raw_path: bool,
        query_req: dict[str, JSON],
        query_opt: dict[str, JSON],
        body_bytes: bytes | None,
        auth_kind: str,
        ctype: str,
    ) -> FuzzRequest:
        path = op.path_template
        for name, value in path_values.items():
            path = path.replace("{" + name + "}", _path_segment(value, raw_path) or "%20")
        pairs = [(k, v) for k, val in {**query_req, **query_opt}.items() for v in _query_value(val)]
        url = op.base_path + path + (("?" + urlencode(pairs, errors="surrogatepass")) if pairs else "")
        headers = {"Content-Type": ctype} if body_bytes is not None and ctype else {}
        return FuzzRequest(op.method, url, headers, body_bytes, auth_kind)

    return st.builds(
        build,
        st.fixed_dictionaries(path_params),
        st.booleans() if gen.mutate else st.just(False),
        st.fixed_dictionaries(query_required),
        st.fixed_dictionaries({}, optional=query_optional),
        body,
        auth,
        content_type,
    )


def shuffled(ops: list[Operation], seed: int) -> list[Operation]:
    out = list(ops)
    random.Random(seed).shuffle(out)
    return out
