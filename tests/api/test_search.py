"""POST /search (room_events) end to end on both engines: Korean substrings of every length, English
words, ordering, pagination, groups, context, state, visibility and redactions."""

from __future__ import annotations

import base64
import unicodedata
from typing import Any

import pytest

from homeserver.services.search import SearchBatch, searchable_text
from homeserver.storage.search_dialect import grams, parse_terms

from ..conftest import services_of
from .helpers import auth, register

V3 = "/_matrix/client/v3"


class User:
    def __init__(self, client: Any, body: dict[str, Any]) -> None:
        self.client = client
        self.user_id: str = body["user_id"]
        self.token: str = body["access_token"]
        self._txn = 0

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)

    async def create_room(self, **body: Any) -> str:
        resp = await self.client.post(f"{V3}/createRoom", json=body, headers=self.headers)
        data = await resp.json()
        assert resp.status == 200, data
        return str(data["room_id"])

    async def join(self, room_id: str) -> None:
        resp = await self.client.post(f"{V3}/join/{room_id}", headers=self.headers)
        assert resp.status == 200, await resp.json()

    async def leave(self, room_id: str) -> None:
        resp = await self.client.post(f"{V3}/rooms/{room_id}/leave", headers=self.headers)
        assert resp.status == 200, await resp.json()

    async def say(self, room_id: str, text: str) -> str:
        self._txn += 1
        resp = await self.client.put(
            f"{V3}/rooms/{room_id}/send/m.room.message/t{self._txn}",
            json={"msgtype": "m.text", "body": text},
            headers=self.headers,
        )
        data = await resp.json()
        assert resp.status == 200, data
        return str(data["event_id"])

    async def state(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        resp = await self.client.put(
            f"{V3}/rooms/{room_id}/state/{event_type}/", json=content, headers=self.headers
        )
        data = await resp.json()
        assert resp.status == 200, data
        return str(data["event_id"])

    async def redact(self, room_id: str, event_id: str) -> None:
        self._txn += 1
        resp = await self.client.put(
            f"{V3}/rooms/{room_id}/redact/{event_id}/r{self._txn}", json={}, headers=self.headers
        )
        assert resp.status == 200, await resp.json()

    async def search_raw(self, criteria: dict[str, Any], next_batch: str | None = None) -> Any:
        params = {"next_batch": next_batch} if next_batch else None
        return await self.client.post(
            f"{V3}/search",
            json={"search_categories": {"room_events": criteria}},
            params=params,
            headers=self.headers,
        )

    async def search(self, term: str, next_batch: str | None = None, **criteria: Any) -> dict[str, Any]:
        resp = await self.search_raw({"search_term": term, **criteria}, next_batch)
        body = await resp.json()
        assert resp.status == 200, body
        result: dict[str, Any] = body["search_categories"]["room_events"]
        return result

    async def found(self, term: str, **criteria: Any) -> list[str]:
        return [r["result"]["event_id"] for r in (await self.search(term, **criteria))["results"]]


async def new_user(client: Any) -> User:
    return User(client, await register(client))


SENTENCES = [
    "내일 회의는 10시입니다",
    "점심 메뉴는 김치찌개",
    "The meetings are running late today",
    "明天的会议在十点",
    "회의록은 공유 폴더에 있습니다",
]


@pytest.fixture
async def korean(any_engine_client: Any) -> tuple[User, str, dict[str, str]]:
    alice = await new_user(any_engine_client)
    room = await alice.create_room(preset="private_chat")
    ids = {text: await alice.say(room, text) for text in SENTENCES}
    return alice, room, ids


# -- Korean and CJK: any substring a user would type -----------------------------------------------


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("회의", ["내일 회의는 10시입니다", "회의록은 공유 폴더에 있습니다"]),  # 2 syllables
        ("10시", ["내일 회의는 10시입니다"]),  # 3 characters, digits + Hangul
        ("회의는", ["내일 회의는 10시입니다"]),  # noun + particle
        ("시입니다", ["내일 회의는 10시입니다"]),
        ("회", ["내일 회의는 10시입니다", "회의록은 공유 폴더에 있습니다"]),  # 1 syllable
        ("찌개", ["점심 메뉴는 김치찌개"]),  # inside a word
        ("김치찌개", ["점심 메뉴는 김치찌개"]),
        ("내일 10시", ["내일 회의는 10시입니다"]),  # every term must match
        ("회의 점심", []),
        ("회의록", ["회의록은 공유 폴더에 있습니다"]),
        ("회의실", []),
        ("会议", ["明天的会议在十点"]),  # Chinese, 2 characters
        ("在十点", ["明天的会议在十点"]),
        ("회의?", ["내일 회의는 10시입니다", "회의록은 공유 폴더에 있습니다"]),  # punctuation dropped
    ],
)
async def test_korean_and_cjk_substrings(
    korean: tuple[User, str, dict[str, str]], term: str, expected: list[str]
) -> None:
    alice, _, ids = korean
    for order in ("rank", "recent"):
        found = await alice.found(term, order_by=order)
        assert sorted(found) == sorted(ids[t] for t in expected), (term, order)


async def test_korean_result_shape(korean: tuple[User, str, dict[str, str]]) -> None:
    alice, room, ids = korean
    body = await alice.search("회의", order_by="recent")
    assert body["count"] >= 2
    assert body["highlights"] == ["회의"]
    first = body["results"][0]
    assert first["result"]["event_id"] == ids["회의록은 공유 폴더에 있습니다"]  # newest first
    assert first["result"]["room_id"] == room
    assert first["result"]["content"]["body"] == "회의록은 공유 폴더에 있습니다"
    assert isinstance(first["rank"], float)
    assert "next_batch" not in body


async def test_decomposed_hangul_and_fullwidth_are_normalised(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room()
    nfd = unicodedata.normalize("NFD", "회의 자료")  # macOS clients may send decomposed Hangul
    event_id = await alice.say(room, nfd)
    assert await alice.found("회의") == [event_id]
    wide = await alice.say(room, "ＡＢＣ회사")  # full-width Latin
    assert await alice.found("abc") == [wide]


# -- English --------------------------------------------------------------------------------------------


async def test_english_word_search(korean: tuple[User, str, dict[str, str]]) -> None:
    alice, _, ids = korean
    english = ids["The meetings are running late today"]
    assert await alice.found("meeting") == [english]  # singular finds the plural
    assert await alice.found("MEETINGS") == [english]  # case-insensitive
    assert await alice.found("run") == [english]  # prefix
    assert await alice.found("running late") == [english]
    assert await alice.found("late tomorrow") == []
    assert await alice.found("xylophone") == []


async def test_short_latin_terms(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room()
    hello = await alice.say(room, "ok go ahead")
    await alice.say(room, "nothing here")
    assert await alice.found("go") == [hello]
    assert await alice.found("ok") == [hello]


# -- ordering and pagination ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["recent", "rank"])
async def test_pagination_with_next_batch(any_engine_client: Any, order: str) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room()
    sent = [await alice.say(room, f"주간 회의 안건 {i}") for i in range(7)]
    await alice.say(room, "unrelated")
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        body = await alice.search("회의", next_batch=token, order_by=order, filter={"limit": 3})
        assert len(body["results"]) <= 3
        seen += [r["result"]["event_id"] for r in body["results"]]
        pages += 1
        token = body.get("next_batch")
        if token is None:
            break
        assert pages < 10
    assert pages == 3
    assert sorted(seen) == sorted(sent)
    assert len(set(seen)) == len(seen)
    if order == "recent":
        assert seen == list(reversed(sent))


async def test_rank_orders_by_relevance(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room()
    await alice.say(room, "deploy " + "padding words here " * 20)
    short = await alice.say(room, "deploy now")
    body = await alice.search("deploy", order_by="rank")
    ranks = [r["rank"] for r in body["results"]]
    assert ranks == sorted(ranks, reverse=True)
    assert body["results"][0]["result"]["event_id"] == short


async def test_short_scan_pagination(any_engine_client: Any) -> None:
    """A query no index serves (one Latin letter on SQLite) still pages through everything."""
    alice = await new_user(any_engine_client)
    room = await alice.create_room()
    sent = [await alice.say(room, f"q{i}") for i in range(5)]
    seen: list[str] = []
    token = None
    for _ in range(10):
        body = await alice.search("q", next_batch=token, order_by="recent", filter={"limit": 2})
        seen += [r["result"]["event_id"] for r in body["results"]]
        token = body.get("next_batch")
        if token is None:
            break
    assert seen == list(reversed(sent))


async def test_bad_requests(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    resp = await alice.search_raw({"search_term": "x", "order_by": "newest"})
    assert resp.status == 400
    resp = await alice.search_raw({"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}})
    assert resp.status == 400
    resp = await alice.search_raw({"keys": ["content.body"]})
    assert resp.status == 400
    assert (await resp.json())["errcode"] == "M_MISSING_PARAM"
    resp = await alice.search_raw({"search_term": "x"}, next_batch="not-a-token")
    assert resp.status == 400
    resp = await any_engine_client.post(f"{V3}/search", json={}, headers=alice.headers)
    assert resp.status == 400
    resp = await any_engine_client.post(f"{V3}/search", json={"search_categories": {}}, headers=alice.headers)
    assert resp.status == 200
    assert await resp.json() == {"search_categories": {}}


@pytest.mark.parametrize(
    ("order", "mode", "position"),
    [
        ("recent", "r", "99999999999999999999"),  # beyond BIGINT: was an SQL overflow (500)
        ("rank", "k", "9223372036854775808"),
        ("recent", "r", "-1"),
        ("rank", "k", "1_0"),
        ("recent", "r", "\u0663"),
    ],
)
async def test_next_batch_positions_outside_bigint_are_invalid(
    any_engine_client: Any, order: str, mode: str, position: str
) -> None:
    """Found by the fuzzer: a batch token carrying a huge position made /search fail with a 500."""
    alice = await new_user(any_engine_client)
    room_id = await alice.create_room()
    await alice.say(room_id, "hello there")
    forged = SearchBatch(order, mode, 0).serialize()  # then swap in the raw position
    raw = base64.urlsafe_b64decode(forged + "=" * (-len(forged) % 4)).decode().split("\n")
    raw[2] = position
    token = base64.urlsafe_b64encode("\n".join(raw).encode()).decode().rstrip("=")
    resp = await alice.search_raw({"search_term": "hello", "order_by": order}, next_batch=token)
    assert resp.status == 400
    assert (await resp.json())["errcode"] == "M_INVALID_PARAM"
    # The largest BIGINT is still a well-formed position.
    top = SearchBatch(order, mode, 2**63 - 1).serialize()
    resp = await alice.search_raw({"search_term": "hello", "order_by": order}, next_batch=top)
    assert resp.status == 200, await resp.text()


# -- visibility -------------------------------------------------------------------------------------------


async def test_rooms_the_user_is_not_in_are_not_searched(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    bob = await new_user(any_engine_client)
    room = await alice.create_room(preset="public_chat")
    await alice.say(room, "비밀 프로젝트 코드명")
    assert await bob.found("프로젝트") == []
    await bob.join(room)
    # shared history visibility (the default): after joining, earlier messages are visible
    assert len(await bob.found("프로젝트")) == 1


async def test_joined_visibility_hides_history_before_join(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    bob = await new_user(any_engine_client)
    room = await alice.create_room(preset="public_chat")
    await alice.state(room, "m.room.history_visibility", {"history_visibility": "joined"})
    await alice.say(room, "가입 전 메시지 회의")
    await bob.join(room)
    after = await alice.say(room, "가입 후 메시지 회의")
    assert await bob.found("회의") == [after]
    assert len(await alice.found("회의")) == 2


async def test_left_room_searchable_up_to_leave(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    bob = await new_user(any_engine_client)
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    before = await alice.say(room, "떠나기 전 공지")
    await bob.leave(room)
    await alice.say(room, "떠난 후 공지")
    assert await bob.found("공지") == [before]


async def test_redacted_messages_disappear(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room()
    keep = await alice.say(room, "보안 점검 일정")
    gone = await alice.say(room, "보안 비밀번호는 hunter2")
    assert sorted(await alice.found("보안")) == sorted([keep, gone])
    await alice.redact(room, gone)
    assert await alice.found("보안") == [keep]
    assert await alice.found("hunter2") == []
    assert await alice.found("비밀") == []  # the gram index forgot it too


# -- keys, filter, groups, context, state -----------------------------------------------------------------


async def test_keys_and_room_state_events(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room(name="마케팅 팀 회의실", topic="분기별 캠페인 논의")
    message = await alice.say(room, "마케팅 자료 공유")
    names = await alice.search("마케팅", keys=["content.name"])
    assert [r["result"]["type"] for r in names["results"]] == ["m.room.name"]
    assert await alice.found("마케팅", keys=["content.body"]) == [message]
    topics = await alice.search("캠페인", keys=["content.topic"])
    assert [r["result"]["type"] for r in topics["results"]] == ["m.room.topic"]
    assert len((await alice.search("마케팅"))["results"]) == 2


async def test_filter_rooms_and_senders(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    bob = await new_user(any_engine_client)
    room1 = await alice.create_room(preset="public_chat")
    room2 = await alice.create_room(preset="public_chat")
    await bob.join(room1)
    a1 = await alice.say(room1, "공통 단어 하나")
    b1 = await bob.say(room1, "공통 단어 둘")
    a2 = await alice.say(room2, "공통 단어 셋")
    assert sorted(await alice.found("공통", filter={"rooms": [room1]})) == sorted([a1, b1])
    assert await alice.found("공통", filter={"not_rooms": [room1]}) == [a2]
    assert await alice.found("공통", filter={"senders": [bob.user_id]}) == [b1]
    assert sorted(await alice.found("공통", filter={"not_senders": [bob.user_id]})) == sorted([a1, a2])


async def test_groups_context_and_state(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room(name="그룹방")
    before = await alice.say(room, "첫 번째")
    hit = await alice.say(room, "검색 대상 메시지")
    after = await alice.say(room, "세 번째")
    body = await alice.search(
        "대상",
        order_by="recent",
        groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
        event_context={"before_limit": 1, "after_limit": 1, "include_profile": True},
        include_state=True,
    )
    assert body["groups"]["room_id"][room]["results"] == [hit]
    assert body["groups"]["room_id"][room]["order"] == 1
    assert body["groups"]["sender"][alice.user_id]["results"] == [hit]
    context = body["results"][0]["context"]
    assert [e["event_id"] for e in context["events_before"]] == [before]
    assert [e["event_id"] for e in context["events_after"]] == [after]
    assert context["start"] and context["end"]
    assert alice.user_id in context["profile_info"]
    state_types = {e["type"] for e in body["state"][room]}
    assert {"m.room.create", "m.room.member", "m.room.name"} <= state_types


async def test_group_next_batch_stays_in_its_room(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room1 = await alice.create_room()
    room2 = await alice.create_room()
    in_room1 = [await alice.say(room1, f"보고서 {i}") for i in range(3)]
    await alice.say(room2, "보고서 다른 방")
    body = await alice.search(
        "보고서", order_by="recent", filter={"limit": 1}, groupings={"group_by": [{"key": "room_id"}]}
    )
    group_tokens = {room: g.get("next_batch") for room, g in body["groups"]["room_id"].items()}
    assert list(group_tokens) == [room2]  # the newest
    # the top-level token continues everywhere, a room group's token within its room only
    page = await alice.search(
        "보고서", next_batch=body["next_batch"], order_by="recent", filter={"limit": 10, "rooms": [room1]}
    )
    assert [r["result"]["event_id"] for r in page["results"]] == list(reversed(in_room1))
    token = SearchBatch.parse(body["next_batch"])
    room1_token = SearchBatch(token.order, token.mode, token.position, room1).serialize()
    page = await alice.search("보고서", next_batch=room1_token, order_by="recent", filter={"limit": 10})
    assert [r["result"]["event_id"] for r in page["results"]] == list(reversed(in_room1))


async def test_index_is_written_in_the_event_transaction(any_engine_client: Any) -> None:
    """One message: one (or two) index rows, readable as soon as the send returns."""
    services = services_of(any_engine_client)
    alice = await new_user(any_engine_client)
    room = await alice.create_room()
    event_id = await alice.say(room, "즉시 검색 가능")
    pos = await services.db.fetchval("SELECT stream_ordering FROM events WHERE event_id = $1", event_id)
    if services.db.dialect == "sqlite":
        value = await services.db.fetchval("SELECT value FROM event_search WHERE rowid = $1", pos)
    else:
        value = await services.db.fetchval("SELECT value FROM event_search WHERE stream_ordering = $1", pos)
    assert value == "즉시 검색 가능"


# -- pure helpers -------------------------------------------------------------------------------------------


def test_grams_and_terms() -> None:
    assert grams("내일 회의") == ["내", "일", "내일", "회", "의", "회의"]
    assert grams("10시") == ["시", "0시"]
    assert grams("hello world") == []
    assert [t.text for t in parse_terms("  회의?  MEETING  회의 ")] == ["회의", "meeting"]
    assert [t.gram_ok for t in parse_terms("회의 10시 a 회의록")] == [True, False, False, False]


def test_searchable_text_of_events() -> None:
    class E:
        def __init__(self, type: str, content: dict[str, Any], state_key: str | None = None) -> None:
            self.type, self.content, self.state_key = type, content, state_key

    assert searchable_text(E("m.room.message", {"body": "hi"})) == "hi"  # type: ignore[arg-type]
    assert searchable_text(E("m.room.message", {"body": 5})) is None  # type: ignore[arg-type]
    assert searchable_text(E("m.room.name", {"name": "방"}, "")) == "방"  # type: ignore[arg-type]
    topic = {
        "topic": "주제",
        "m.topic": {"m.text": [{"body": "<b>주제</b>", "mimetype": "text/html"}, {"body": "새 주제"}]},
    }
    assert searchable_text(E("m.room.topic", topic, "")) == "주제\n새 주제"  # type: ignore[arg-type]
    assert searchable_text(E("m.room.encrypted", {"body": "x"})) is None  # type: ignore[arg-type]


async def test_odd_terms_never_fail(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room()
    event_id = await alice.say(room, 'don\'t e-mail foo:bar a&b 100% under_score "quoted" back\\slash')
    for term in ["don't", "e-mail", "foo:bar", "a&b", "100%", "under_score", '"quoted"', "back\\slash"]:
        assert await alice.found(term) == [event_id], term
    for term in ["\\", "'", '"', "%", "_", "*", "(", "!:&|", "NEAR", "AND OR NOT", "-x", "^"]:
        await alice.found(term)  # no error; results depend on the engine
