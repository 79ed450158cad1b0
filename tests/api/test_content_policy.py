"""Abuse control: the message rate limit, the word filter and the room-creation policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import ConfigError, build_config
from homeserver.services.content_policy import WordMatcher, texts_of

from ..conftest import services_of
from .helpers import auth, register

V3 = "/_matrix/client/v3"
WORDS = ["badword", "nasty phrase", "바보", "멍청이"]


async def ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def expect_error(resp: Any, status: int, errcode: str) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert body["errcode"] == errcode, body
    return dict(body)


def send(
    client: Any, token: str, room_id: str, content: dict[str, Any], txn: str, etype: str = "m.room.message"
) -> Any:
    return client.put(f"{V3}/rooms/{room_id}/send/{etype}/{txn}", json=content, headers=auth(token))


def text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


async def create_room(client: Any, token: str, **body: Any) -> Any:
    return await client.post(f"{V3}/createRoom", json=body, headers=auth(token))


# -- matching rules (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("this is a badword here", "badword"),
        ("BADWORD!", "badword"),
        ("Ｂａｄｗｏｒｄ", "badword"),  # fullwidth letters (NFKC)
        ("badwords are fine", None),  # Latin words match whole words only
        ("notbadword", None),
        ("bad_word", None),
        ("x_badword_y", "badword"),  # underscores separate words
        ("badword이야", "badword"),  # a Korean particle does not extend a Latin word
        ("what a nasty   phrase", None),  # phrases match as written
        ("what a Nasty Phrase.", "nasty phrase"),
        ("너 바보야", "바보"),  # Korean matches inside words: particles attach to them
        ("바보들이", "바보"),
        ("\u1107\u1161\u1107\u1169 같은", "바보"),  # decomposed Jamo compose under NFKC
        ("멍청이였어", "멍청이"),
        ("정말 좋은 하루", None),
        ("", None),
    ],
)
def test_word_matcher(message: str, expected: str | None) -> None:
    assert WordMatcher(WORDS).find(message) == expected


def test_word_matcher_empty_and_special_characters() -> None:
    assert not WordMatcher([])
    assert WordMatcher([]).find("anything") is None
    matcher = WordMatcher(["c++", "a.b"])
    assert matcher.find("I like C++ a lot") == "c++"
    assert matcher.find("axb") is None  # no regex meaning
    assert matcher.find("a.b.") == "a.b"


def test_texts_of_message_edit_and_html() -> None:
    content = {
        "body": "fine",
        "formatted_body": "<b>bad</b>word",
        "m.new_content": {"body": "edited", "formatted_body": "<p>x</p>"},
    }
    texts = list(texts_of("m.room.message", content))
    assert "badword" in texts and "edited" in texts
    assert list(texts_of("m.room.topic", {"topic": "a", "m.topic": {"m.text": [{"body": "b"}]}})) == [
        "a",
        "b",
    ]
    assert list(texts_of("m.room.name", {"name": "n"})) == ["n"]
    assert list(texts_of("m.reaction", {"body": "badword"})) == []


def test_config_keys(tmp_path: Path) -> None:
    words_file = tmp_path / "words.txt"
    words_file.write_text("# comment\nfoo\n\n 바보 \n", encoding="utf-8")
    config = build_config(
        {"word_filter": {"words": ["bar"], "words_file": str(words_file), "action": "redact"}}
    )
    assert config.word_filter.enabled is True  # on once words are listed
    assert config.word_filter.words == ("bar", "foo", "바보")
    assert config.word_filter.action == "redact" and config.word_filter.exempt_admins is True
    assert config.unknown_keys == ()
    default = build_config({})
    assert default.word_filter.enabled is False and default.word_filter.words == ()
    assert (default.room_creation.allow, default.room_creation.allow_direct_messages) == ("everyone", True)
    with pytest.raises(ConfigError, match=r"word_filter\.action"):
        build_config({"word_filter": {"action": "shout"}})
    with pytest.raises(ConfigError, match=r"room_creation\.allow"):
        build_config({"room_creation": {"allow": "nobody"}})
    with pytest.raises(ConfigError, match=r"word_filter\.words_file"):
        build_config({"word_filter": {"words_file": str(tmp_path / "missing.txt")}})
    with pytest.raises(ConfigError, match=r"word_filter\.words\[0\]"):
        build_config({"word_filter": {"words": [" "]}})


# -- rc_message --------------------------------------------------------------------------------------


async def test_message_rate_limit(aiohttp_client: Any, engine_config: Any) -> None:
    client = await aiohttp_client(
        create_app_from_config(engine_config(rc_message={"per_second": 0.001, "burst_count": 3}))
    )
    alice = await register(client)
    room_id = (await ok(await create_room(client, alice["access_token"], preset="public_chat")))["room_id"]
    for i in range(3):
        await ok(await send(client, alice["access_token"], room_id, text(f"m{i}"), f"t{i}"))
    resp = await send(client, alice["access_token"], room_id, text("one too many"), "t3")
    body = await expect_error(resp, 429, "M_LIMIT_EXCEEDED")
    assert isinstance(body["retry_after_ms"], int) and body["retry_after_ms"] > 0
    assert int(resp.headers["Retry-After"]) >= 1
    # Per user.
    bob = await register(client)
    await ok(await client.post(f"{V3}/join/{room_id}", json={}, headers=auth(bob["access_token"])))
    await ok(await send(client, bob["access_token"], room_id, text("hi"), "b1"))


# -- word filter ------------------------------------------------------------------------------------


async def test_word_filter_rejects(aiohttp_client: Any, engine_config: Any) -> None:
    client = await aiohttp_client(create_app_from_config(engine_config(word_filter={"words": WORDS})))
    alice = await register(client)
    admin = await register(client, admin=True)
    token = alice["access_token"]
    room_id = (await ok(await create_room(client, token, preset="public_chat")))["room_id"]
    await ok(await client.post(f"{V3}/join/{room_id}", json={}, headers=auth(admin["access_token"])))

    body = await expect_error(
        await send(client, token, room_id, text("you badword"), "t1"), 403, "M_FORBIDDEN"
    )
    assert "badword" in body["error"]
    await expect_error(await send(client, token, room_id, text("너 바보야"), "t2"), 403, "M_FORBIDDEN")
    html = text("fine", format="org.matrix.custom.html", formatted_body="<i>bad</i>word")
    await expect_error(await send(client, token, room_id, html, "t3"), 403, "M_FORBIDDEN")
    await ok(await send(client, token, room_id, text("all good, badwords aside"), "t4"))
    original = (await ok(await send(client, token, room_id, text("clean"), "t5")))["event_id"]
    edit = text(
        "* 바보",
        **{"m.new_content": text("바보"), "m.relates_to": {"rel_type": "m.replace", "event_id": original}},
    )
    await expect_error(await send(client, token, room_id, edit, "t6"), 403, "M_FORBIDDEN")
    # Name and topic.
    resp = await client.put(
        f"{V3}/rooms/{room_id}/state/m.room.name", json={"name": "바보방"}, headers=auth(token)
    )
    await expect_error(resp, 403, "M_FORBIDDEN")
    resp = await client.put(
        f"{V3}/rooms/{room_id}/state/m.room.topic", json={"topic": "a nasty phrase"}, headers=auth(token)
    )
    await expect_error(resp, 403, "M_FORBIDDEN")
    # ... also when creating a room.
    await expect_error(await create_room(client, token, name="Badword club"), 403, "M_FORBIDDEN")
    await expect_error(
        await create_room(
            client, token, initial_state=[{"type": "m.room.topic", "content": {"topic": "멍청이들"}}]
        ),
        403,
        "M_FORBIDDEN",
    )
    await ok(await create_room(client, token, name="Study group", topic="Nice"))
    # Admins are exempt by default; other event types are not checked.
    await ok(await send(client, admin["access_token"], room_id, text("badword"), "a1"))
    await ok(await send(client, token, room_id, {"body": "badword"}, "t7", etype="org.example.custom"))


async def test_word_filter_can_cover_admins(aiohttp_client: Any, engine_config: Any) -> None:
    config = engine_config(word_filter={"enabled": True, "words": WORDS, "exempt_admins": False})
    client = await aiohttp_client(create_app_from_config(config))
    admin = await register(client, admin=True)
    room_id = (await ok(await create_room(client, admin["access_token"])))["room_id"]
    await expect_error(
        await send(client, admin["access_token"], room_id, text("badword"), "a1"), 403, "M_FORBIDDEN"
    )


async def test_word_filter_disabled(aiohttp_client: Any, engine_config: Any) -> None:
    config = engine_config(word_filter={"enabled": False, "words": WORDS})
    client = await aiohttp_client(create_app_from_config(config))
    alice = await register(client)
    room_id = (await ok(await create_room(client, alice["access_token"], name="badword")))["room_id"]
    await ok(await send(client, alice["access_token"], room_id, text("badword"), "t1"))


async def test_word_filter_redacts(aiohttp_client: Any, engine_config: Any) -> None:
    config = engine_config(word_filter={"words": WORDS, "action": "redact"})
    client = await aiohttp_client(create_app_from_config(config))
    alice = await register(client)
    bob = await register(client)
    token = alice["access_token"]
    room_id = (await ok(await create_room(client, token, preset="public_chat")))["room_id"]
    await ok(await client.post(f"{V3}/join/{room_id}", json={}, headers=auth(bob["access_token"])))
    bad = (await ok(await send(client, token, room_id, text("정말 바보 같아"), "t1")))["event_id"]
    good = (await ok(await send(client, token, room_id, text("hello"), "t2")))["event_id"]
    resp = await client.put(
        f"{V3}/rooms/{room_id}/state/m.room.topic", json={"topic": "badword"}, headers=auth(token)
    )
    topic = (await ok(resp))["event_id"]
    await services_of(client).content_policy.drain()

    for event_id in (bad, topic):
        event = await ok(
            await client.get(f"{V3}/rooms/{room_id}/event/{event_id}", headers=auth(bob["access_token"]))
        )
        assert event["content"] == {}, event
        because = event["unsigned"]["redacted_because"]
        assert because["sender"] == alice["user_id"]
        assert because["content"]["reason"]
    event = await ok(
        await client.get(f"{V3}/rooms/{room_id}/event/{good}", headers=auth(bob["access_token"]))
    )
    assert event["content"]["body"] == "hello"


# -- room creation policy ---------------------------------------------------------------------------


async def test_room_creation_limited_to_admins(aiohttp_client: Any, engine_config: Any) -> None:
    config = engine_config(room_creation={"allow": "admins"})
    client = await aiohttp_client(create_app_from_config(config))
    alice = await register(client)
    bob = await register(client)
    carol = await register(client)
    admin = await register(client, admin=True)
    token = alice["access_token"]

    body = await expect_error(await create_room(client, token, name="Mine"), 403, "M_FORBIDDEN")
    assert "administrators" in body["error"]
    await ok(await create_room(client, admin["access_token"], name="Official", preset="public_chat"))

    dm = {"is_direct": True, "invite": [bob["user_id"]], "preset": "trusted_private_chat"}
    room_id = (await ok(await create_room(client, token, **dm)))["room_id"]
    await ok(await client.post(f"{V3}/join/{room_id}", json={}, headers=auth(bob["access_token"])))
    # Not a DM: several invitees, no invitee, not flagged, an alias, published, public join rule, a space.
    not_dms = [
        {**dm, "invite": [bob["user_id"], carol["user_id"]]},
        {**dm, "invite": []},
        {**dm, "invite": [alice["user_id"]]},
        {**dm, "is_direct": False},
        {**dm, "room_alias_name": "dm"},
        {**dm, "visibility": "public"},
        {**dm, "preset": "public_chat"},
        {**dm, "initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "public"}}]},
        {**dm, "creation_content": {"type": "m.space"}},
    ]
    for body in not_dms:
        await expect_error(await create_room(client, token, **body), 403, "M_FORBIDDEN")
    # Upgrades are not room creations: a DM's admin may upgrade it.
    resp = await client.post(f"{V3}/rooms/{room_id}/upgrade", json={"new_version": "10"}, headers=auth(token))
    await ok(resp)


async def test_room_creation_admins_only_without_dms(aiohttp_client: Any, engine_config: Any) -> None:
    config = engine_config(room_creation={"allow": "admins", "allow_direct_messages": False})
    client = await aiohttp_client(create_app_from_config(config))
    alice = await register(client)
    bob = await register(client)
    resp = await create_room(client, alice["access_token"], is_direct=True, invite=[bob["user_id"]])
    await expect_error(resp, 403, "M_FORBIDDEN")
    # Validation errors still come first.
    await expect_error(
        await create_room(client, alice["access_token"], visibility="secret"), 400, "M_BAD_JSON"
    )
