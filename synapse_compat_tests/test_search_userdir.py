"""Server-side search (POST /search, room_events) and the user directory
(POST /user_directory/search).

Only what the spec guarantees is asserted, so the suite passes against Synapse unchanged: word and
word-prefix search in English/ASCII (Synapse's SQLite search cannot find Korean substrings; our
Korean cases live in tests/api/test_search.py and tests/storage/test_search_korean.py), `recent`
pagination (Synapse does not paginate `rank`), visibility, groups, context and redactions.

Synapse updates its user directory in the background after a membership or profile change, so the
directory tests poll (bounded) until the expected user shows up; nothing else waits.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable
from typing import Any

from .client import Response
from .harness import (
    Homeserver,
    User,
    assert_api_error,
    assert_event_schema,
    create_room,
    join_room,
    room_path,
    send_text,
)
from .spec_schema import assert_matches_spec, assert_request_matches_spec

V3 = "/_matrix/client/v3"
SEARCH = "/search"
USER_DIRECTORY = "/user_directory/search"
DIRECTORY_WAIT_S = 15.0


def is_synapse(resp: Response) -> bool:
    return (resp.header("Server") or "").lower().startswith("synapse/")


def unique_word(prefix: str = "zebra") -> str:
    """A word no other test sends: letters only, so every tokenizer keeps it whole."""
    return prefix + "".join(secrets.choice("bcdfghjklmnpqrstvwxz") for _ in range(8))


def _without_nulls(mapping: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if mapping.get(key, "") is None:
            del mapping[key]


def _check(resp: Response, api_file: str, path: str, synapse_nulls: Callable[[Any], None]) -> Any:
    """Status 200 and the spec schema. Synapse deviation: it sends `null` for a missing display
    name or avatar URL where the spec's schema wants a string or the key left out; only when the
    server is Synapse are those nulls dropped before validating."""
    assert resp.status == 200, resp.describe()
    body = copy.deepcopy(resp.body)
    if is_synapse(resp):
        synapse_nulls(body)
    assert_matches_spec(api_file, path, "POST", 200, body)
    return body


def _search_nulls(body: Any) -> None:
    for entry in body["search_categories"].get("room_events", {}).get("results", []):
        for profile in (entry.get("context") or {}).get("profile_info", {}).values():
            _without_nulls(profile, ("displayname", "avatar_url"))


def _directory_nulls(body: Any) -> None:
    for entry in body.get("results", []):
        _without_nulls(entry, ("display_name", "avatar_url"))


def search(user: User, criteria: dict[str, Any], next_batch: str | None = None) -> dict[str, Any]:
    body = {"search_categories": {"room_events": criteria}}
    assert_request_matches_spec("search.yaml", SEARCH, "POST", body)
    params = {"next_batch": next_batch} if next_batch else None
    resp = user.client.post(f"{V3}/search", body, params=params)
    result: dict[str, Any] = _check(resp, "search.yaml", SEARCH, _search_nulls)["search_categories"][
        "room_events"
    ]
    for entry in result.get("results", []):
        assert_event_schema(entry["result"])
    return result


def result_ids(result: dict[str, Any]) -> list[str]:
    return [entry["result"]["event_id"] for entry in result.get("results", [])]


def directory(user: User, term: str, limit: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"search_term": term}
    if limit is not None:
        body["limit"] = limit
    assert_request_matches_spec("users.yaml", USER_DIRECTORY, "POST", body)
    resp = user.client.post(f"{V3}/user_directory/search", body)
    out: dict[str, Any] = _check(resp, "users.yaml", USER_DIRECTORY, _directory_nulls)
    return out


def directory_ids(user: User, term: str) -> list[str]:
    return [r["user_id"] for r in directory(user, term)["results"]]


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DIRECTORY_WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# --------------------------------------------------------------------------- POST /search


def test_search_finds_words_and_prefixes(user: User) -> None:
    room_id = create_room(user)
    word = unique_word()
    event_id = send_text(user, room_id, f"The quick brown fox {word} jumps")
    send_text(user, room_id, "nothing to see here")
    result = search(user, {"search_term": word})
    assert result_ids(result) == [event_id]
    assert result["count"] >= 1
    entry = result["results"][0]
    assert entry["result"]["room_id"] == room_id
    assert entry["result"]["content"]["body"].endswith(f"{word} jumps")
    assert isinstance(entry["rank"], (int, float))
    assert isinstance(result.get("highlights", []), list)
    # in any letter case (prefix matching is not guaranteed: Synapse's SQLite search has none)
    assert result_ids(search(user, {"search_term": word.upper(), "order_by": "recent"})) == [event_id]
    assert result_ids(search(user, {"search_term": unique_word()})) == []


def test_search_recent_pagination(user: User) -> None:
    room_id = create_room(user)
    word = unique_word()
    sent = [send_text(user, room_id, f"{word} number {i}") for i in range(5)]
    seen: list[str] = []
    token: str | None = None
    for _ in range(6):
        page = search(user, {"search_term": word, "order_by": "recent", "filter": {"limit": 2}}, token)
        assert len(page["results"]) <= 2
        seen += result_ids(page)
        token = page.get("next_batch")
        if token is None or not page["results"]:
            break
    assert seen == list(reversed(sent))


def test_search_only_rooms_the_user_is_in(user: User, other_user: User) -> None:
    word = unique_word()
    private = create_room(other_user, preset="private_chat")
    send_text(other_user, private, f"secret {word}")
    assert result_ids(search(user, {"search_term": word})) == []
    public = create_room(other_user, preset="public_chat")
    in_public = send_text(other_user, public, f"public {word}")
    assert result_ids(search(user, {"search_term": word})) == []  # not joined yet
    join_room(user, public)
    assert result_ids(search(user, {"search_term": word})) == [in_public]


def test_search_filter_keys_and_groupings(user: User) -> None:
    word = unique_word()
    room_id = create_room(user, name=f"Room {word}")
    message = send_text(user, room_id, f"message about {word}")
    names = search(user, {"search_term": word, "keys": ["content.name"]})
    assert [e["result"]["type"] for e in names["results"]] == ["m.room.name"]
    assert result_ids(search(user, {"search_term": word, "keys": ["content.body"]})) == [message]
    other_room = create_room(user)
    send_text(user, other_room, f"elsewhere {word}")
    only = search(user, {"search_term": word, "keys": ["content.body"], "filter": {"rooms": [room_id]}})
    assert result_ids(only) == [message]
    grouped = search(
        user,
        {
            "search_term": word,
            "keys": ["content.body"],
            "order_by": "recent",
            "groupings": {"group_by": [{"key": "room_id"}]},
        },
    )
    groups = grouped["groups"]["room_id"]
    assert set(groups) == {room_id, other_room}
    assert groups[room_id]["results"] == [message]


def test_search_event_context(user: User) -> None:
    room_id = create_room(user)
    word = unique_word()
    before = send_text(user, room_id, "the message before")
    hit = send_text(user, room_id, f"the {word} message")
    after = send_text(user, room_id, "the message after")
    result = search(
        user,
        {
            "search_term": word,
            "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": True},
        },
    )
    assert result_ids(result) == [hit]
    context = result["results"][0]["context"]
    assert [e["event_id"] for e in context["events_before"]] == [before]
    assert [e["event_id"] for e in context["events_after"]] == [after]
    for event in (*context["events_before"], *context["events_after"]):
        assert_event_schema(event)


def test_search_include_state(user: User) -> None:
    word = unique_word()
    room_id = create_room(user, name=f"State {word}")
    send_text(user, room_id, f"stateful {word}")
    result = search(user, {"search_term": word, "keys": ["content.body"], "include_state": True})
    types = {event["type"] for event in result["state"][room_id]}
    assert {"m.room.create", "m.room.member", "m.room.name"} <= types


def test_search_redacted_message_disappears(user: User) -> None:
    room_id = create_room(user)
    word = unique_word()
    kept = send_text(user, room_id, f"kept {word}")
    gone = send_text(user, room_id, f"gone {word}")
    assert sorted(result_ids(search(user, {"search_term": word}))) == sorted([kept, gone])
    resp = user.client.put(room_path(room_id, "redact", gone, f"r{secrets.token_hex(4)}"), {})
    assert resp.status == 200, resp.describe()
    assert result_ids(search(user, {"search_term": word})) == [kept]


def test_search_bad_requests(user: User) -> None:
    resp = user.client.post(
        f"{V3}/search", {"search_categories": {"room_events": {"search_term": "x", "order_by": "sideways"}}}
    )
    assert_api_error(resp, "search.yaml", SEARCH, 400)
    resp = user.client.post(
        f"{V3}/search", {"search_categories": {"room_events": {"keys": ["content.body"]}}}
    )
    assert_api_error(resp, "search.yaml", SEARCH, 400)


def test_search_requires_auth(hs: Homeserver) -> None:
    resp = hs.client().post(f"{V3}/search", {"search_categories": {"room_events": {"search_term": "x"}}})
    assert_api_error(resp, "search.yaml", SEARCH, 401, "M_MISSING_TOKEN")


# --------------------------------------------------------------------------- POST /user_directory/search


def test_directory_finds_users_sharing_a_room(hs: Homeserver, user: User) -> None:
    word = unique_word("dir")
    friend = hs.register(displayname=f"Friend {word}")
    stranger = hs.register(displayname=f"Stranger {word}")
    room_id = create_room(user, preset="private_chat", invite=[friend.user_id])
    join_room(friend, room_id)
    eventually(lambda: friend.user_id in directory_ids(user, word), "the friend in the directory")
    result = directory(user, word)
    entry = next(r for r in result["results"] if r["user_id"] == friend.user_id)
    assert entry["display_name"] == f"Friend {word}"
    assert result["limited"] is False
    # a user sharing no room and in no public room is not found
    assert stranger.user_id not in directory_ids(user, word)
    # by the start of the display name, and by the user id
    eventually(lambda: friend.user_id in directory_ids(user, "friend " + word[:6]), "a display name prefix")
    eventually(lambda: friend.user_id in directory_ids(user, friend.localpart), "the user id")


def test_directory_finds_users_in_public_rooms(hs: Homeserver, user: User) -> None:
    word = unique_word("pub")
    member = hs.register(displayname=f"Member {word}")
    create_room(member, preset="public_chat")
    eventually(lambda: directory_ids(user, word) == [member.user_id], "the public room member")


def test_directory_limit_and_limited(hs: Homeserver, user: User) -> None:
    word = unique_word("lim")
    room_id = create_room(user, preset="public_chat")
    members = [hs.register(displayname=f"{word} {i}") for i in range(3)]
    for member in members:
        join_room(member, room_id)
    eventually(lambda: len(directory_ids(user, word)) == 3, "three members")
    page = directory(user, word, limit=2)
    assert len(page["results"]) == 2
    assert page["limited"] is True
    assert {r["user_id"] for r in page["results"]} <= {m.user_id for m in members}


def test_directory_bad_requests(hs: Homeserver, user: User) -> None:
    resp = user.client.post(f"{V3}/user_directory/search", {"limit": 3})
    assert_api_error(resp, "users.yaml", USER_DIRECTORY, 400)
    resp = hs.client().post(f"{V3}/user_directory/search", {"search_term": "x"})
    assert_api_error(resp, "users.yaml", USER_DIRECTORY, 401, "M_MISSING_TOKEN")
