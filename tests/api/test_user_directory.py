"""POST /user_directory/search on both engines: who is visible (shared rooms, public and
world-readable rooms, search_all_users), matching (display name or user id, prefix and substring,
Korean), ranking, `limited`, and the hooks that keep the directory current."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig

from ..conftest import services_of
from .helpers import auth, register

V3 = "/_matrix/client/v3"


class User:
    def __init__(self, client: Any, body: dict[str, Any], password: str) -> None:
        self.client = client
        self.user_id: str = body["user_id"]
        self.token: str = body["access_token"]
        self.password = password

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

    async def invite(self, room_id: str, user_id: str) -> None:
        resp = await self.client.post(
            f"{V3}/rooms/{room_id}/invite", json={"user_id": user_id}, headers=self.headers
        )
        assert resp.status == 200, await resp.json()

    async def set_name(self, name: str) -> None:
        resp = await self.client.put(
            f"{V3}/profile/{self.user_id}/displayname", json={"displayname": name}, headers=self.headers
        )
        assert resp.status == 200, await resp.json()

    async def set_avatar(self, url: str) -> None:
        resp = await self.client.put(
            f"{V3}/profile/{self.user_id}/avatar_url", json={"avatar_url": url}, headers=self.headers
        )
        assert resp.status == 200, await resp.json()

    async def state(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        resp = await self.client.put(
            f"{V3}/rooms/{room_id}/state/{event_type}/", json=content, headers=self.headers
        )
        assert resp.status == 200, await resp.json()

    async def directory(self, term: str, limit: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"search_term": term}
        if limit is not None:
            body["limit"] = limit
        resp = await self.client.post(f"{V3}/user_directory/search", json=body, headers=self.headers)
        data = await resp.json()
        assert resp.status == 200, data
        assert set(data) == {"results", "limited"}
        return dict(data)

    async def finds(self, term: str) -> list[str]:
        return [r["user_id"] for r in (await self.directory(term))["results"]]


async def new_user(client: Any, localpart: str | None = None, name: str | None = None) -> User:
    user = User(client, await register(client, localpart), "pass-word-1")
    if name is not None:
        await user.set_name(name)
    return user


async def test_shared_room_users_are_found(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    bob = await new_user(any_engine_client, name="Bobby Tables")
    carol = await new_user(any_engine_client, name="Bobby Stranger")
    room = await alice.create_room(preset="private_chat")
    assert await alice.finds("bobby") == []
    await alice.invite(room, bob.user_id)
    assert await alice.finds("bobby") == []  # an invite is not a shared room
    await bob.join(room)
    result = await alice.directory("bobby")
    assert result == {"limited": False, "results": [{"user_id": bob.user_id, "display_name": "Bobby Tables"}]}
    assert carol.user_id not in await alice.finds("bobby")
    assert await bob.finds("bobby") == []  # never yourself
    await bob.leave(room)
    assert await alice.finds("bobby") == []


async def test_public_and_world_readable_rooms(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    owner = await new_user(any_engine_client, name="Public Owner")
    reader = await new_user(any_engine_client, name="Reader Owner")
    public = await owner.create_room(preset="public_chat")
    assert await alice.finds("owner") == [owner.user_id]
    private = await reader.create_room(preset="private_chat")
    assert await alice.finds("reader") == []
    await reader.state(private, "m.room.history_visibility", {"history_visibility": "world_readable"})
    assert await alice.finds("reader") == [reader.user_id]
    await owner.state(public, "m.room.join_rules", {"join_rule": "invite"})
    assert await alice.finds("public") == []


async def test_korean_display_names(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room(preset="public_chat")
    kim = await new_user(any_engine_client, name="김철수")
    lee = await new_user(any_engine_client, name="이영희")
    park = await new_user(any_engine_client, name="박철민")
    for user in (kim, lee, park):
        await user.join(room)
    assert await alice.finds("김철수") == [kim.user_id]
    assert await alice.finds("김") == [kim.user_id]  # family name, 1 syllable
    assert await alice.finds("철수") == [kim.user_id]  # given name, 2 syllables
    assert sorted(await alice.finds("철")) == sorted([kim.user_id, park.user_id])
    assert await alice.finds("영희") == [lee.user_id]
    assert await alice.finds("최") == []


async def test_user_id_and_ranking(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room(preset="public_chat")
    exact = await new_user(any_engine_client, "dana", name="Someone")
    prefix = await new_user(any_engine_client, "danaher", name="Other")
    inside = await new_user(any_engine_client, "bob", name="Big Dana Fan")
    substring = await new_user(any_engine_client, "jordana", name="Jordan")
    for user in (exact, prefix, inside, substring):
        await user.join(room)
    found = await alice.finds("dana")
    assert found[:2] == [exact.user_id, prefix.user_id]
    assert found[2] == inside.user_id  # word start in the display name
    assert found[3] == substring.user_id
    assert await alice.finds("@danaher:test.local") == [prefix.user_id]
    assert await alice.finds("DANAHER") == [prefix.user_id]


async def test_limit_and_limited(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room(preset="public_chat")
    for i in range(4):
        user = await new_user(any_engine_client, name=f"Teammate {i}")
        await user.join(room)
    full = await alice.directory("teammate")
    assert len(full["results"]) == 4 and full["limited"] is False
    page = await alice.directory("teammate", limit=3)
    assert len(page["results"]) == 3 and page["limited"] is True
    exact = await alice.directory("teammate", limit=4)
    assert exact["limited"] is False


async def test_profile_changes_and_users_with_profiles_first(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room(preset="public_chat")
    plain = await new_user(any_engine_client, name="Quinn Plain")
    pictured = await new_user(any_engine_client, name="Quinn Pictured")
    for user in (plain, pictured):
        await user.join(room)
    await pictured.set_avatar("mxc://test.local/quinn")
    result = await alice.directory("quinn")
    assert [r["user_id"] for r in result["results"]] == [pictured.user_id, plain.user_id]
    assert result["results"][0]["avatar_url"] == "mxc://test.local/quinn"
    await plain.set_name("혜진")
    assert await alice.finds("quinn") == [pictured.user_id]
    assert await alice.finds("혜진") == [plain.user_id]


async def test_deactivated_users_disappear(any_engine_client: Any) -> None:
    alice = await new_user(any_engine_client)
    room = await alice.create_room(preset="public_chat")
    body = await register(any_engine_client, "leaver")
    leaver = User(any_engine_client, body, "pass-word-1")
    await leaver.set_name("Leaving Soon")
    await leaver.join(room)
    assert await alice.finds("leaving") == [leaver.user_id]
    resp = await any_engine_client.post(f"{V3}/account/deactivate", json={}, headers=leaver.headers)
    session = (await resp.json())["session"]
    password = {"type": "m.login.password", "session": session, "user": "leaver", "password": "pass-word-1"}
    resp = await any_engine_client.post(
        f"{V3}/account/deactivate", json={"auth": password}, headers=leaver.headers
    )
    assert resp.status == 200, await resp.json()
    assert await alice.finds("leaving") == []


async def test_search_all_users(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> None:
    client = await aiohttp_client(
        create_app_from_config(engine_config(user_directory={"search_all_users": True}))
    )
    alice = await new_user(client)
    loner = await new_user(client, name="Lonely Heart")
    assert await alice.finds("lonely") == [loner.user_id]  # no shared or public room needed
    assert await alice.finds(loner.user_id.split(":")[0][1:]) == [loner.user_id]


async def test_directory_disabled_and_bad_requests(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]
) -> None:
    client = await aiohttp_client(create_app_from_config(engine_config(user_directory={"enabled": False})))
    alice = await new_user(client)
    room = await alice.create_room(preset="public_chat")
    bob = await new_user(client, name="Hidden Bob")
    await bob.join(room)
    assert await alice.directory("hidden") == {"limited": False, "results": []}
    resp = await client.post(f"{V3}/user_directory/search", json={}, headers=alice.headers)
    assert resp.status == 400
    assert (await resp.json())["errcode"] == "M_MISSING_PARAM"
    resp = await client.post(f"{V3}/user_directory/search", json={"search_term": 5}, headers=alice.headers)
    assert resp.status == 400
    resp = await client.post(f"{V3}/user_directory/search", json={"search_term": "x"})
    assert resp.status == 401


async def test_backfill_adds_local_users_without_rows(any_engine_client: Any) -> None:
    services = services_of(any_engine_client)
    alice = await new_user(any_engine_client)
    room = await alice.create_room(preset="public_chat")
    bob = await new_user(any_engine_client, name="Backfilled Bob")
    await bob.join(room)
    async with services.db.transaction() as conn:
        await conn.execute("DELETE FROM user_directory WHERE user_id = $1", bob.user_id)
    assert await alice.finds("backfilled") == []
    await services.user_directory.start()
    assert await alice.finds("backfilled") == [bob.user_id]


async def test_user_registered_without_login_is_searchable(aiohttp_client: Any, tmp_path: Any) -> None:
    """A user created with inhibit_login (bots, `register-user`) is in the directory at once."""
    from ..conftest import make_config

    config = make_config(tmp_path, user_directory={"search_all_users": True})
    client = await aiohttp_client(create_app_from_config(config))
    searcher = await register(client)
    body = {"username": "quietbot", "password": "pw", "inhibit_login": True}
    resp = await client.post("/_matrix/client/v3/register", json=body)
    session = (await resp.json())["session"]
    resp = await client.post(
        "/_matrix/client/v3/register", json={**body, "auth": {"type": "m.login.dummy", "session": session}}
    )
    assert resp.status == 200, await resp.json()
    resp = await client.post(
        "/_matrix/client/v3/user_directory/search",
        json={"search_term": "quietbot"},
        headers=auth(searcher["access_token"]),
    )
    found = await resp.json()
    assert [r["user_id"] for r in found["results"]] == ["@quietbot:test.local"]
