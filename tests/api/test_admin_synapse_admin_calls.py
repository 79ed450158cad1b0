"""The admin API calls synapse-admin makes beyond the basics (docs/admin.md): `GET v3/users` with its
tri-state `deactivated` filter, a user's room memberships, the number of invites they sent and of
rooms they joined since a time. Both engines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig

from .ephemeral_helpers import NO_PRESENCE, User, q
from .helpers import register

V1 = "/_synapse/admin/v1"
V3 = "/_synapse/admin/v3"


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


async def _names(admin: User, path: str, **params: Any) -> list[str]:
    body = await admin.get(path, **params)
    assert body["total"] == len(body["users"]), body
    return sorted(u["name"] for u in body["users"])


async def test_v3_users_deactivated_filter(hs: Any) -> None:
    admin = User(hs, await register(hs, "v3admin", admin=True))
    active = User(hs, await register(hs, "v3active"))
    gone = User(hs, await register(hs, "v3gone"))
    await admin.post(f"{V1}/deactivate/{q(gone.user_id)}", {"erase": False})
    everyone = sorted([admin.user_id, active.user_id, gone.user_id])

    # v3: absent → all accounts; true → only deactivated; false → none deactivated.
    assert await _names(admin, f"{V3}/users") == everyone
    assert await _names(admin, f"{V3}/users", deactivated="true") == [gone.user_id]
    assert await _names(admin, f"{V3}/users", deactivated="false") == sorted([admin.user_id, active.user_id])
    # v2 keeps its meaning: deactivated accounts only with deactivated=true, and then all of them.
    assert await _names(admin, "/_synapse/admin/v2/users") == sorted([admin.user_id, active.user_id])
    assert await _names(admin, "/_synapse/admin/v2/users", deactivated="true") == everyone
    # The other filters work as in v2 (synapse-admin's search box sends `name`).
    assert await _names(admin, f"{V3}/users", name="v3act", guests="false", locked="false") == [
        active.user_id
    ]
    paged = await admin.get(f"{V3}/users", limit="1", order_by="name", dir="b")
    assert [u["name"] for u in paged["users"]] == [everyone[-1]] and paged["next_token"] == "1", paged

    status, err = await admin.request("GET", f"{V3}/users", None, None, deactivated="yes")
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")
    status, err = await active.request("GET", f"{V3}/users", None, None)
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
    resp = await hs.get(f"{V3}/users")
    assert resp.status == 401


async def test_memberships_and_counts(hs: Any) -> None:
    admin = User(hs, await register(hs, "mcadmin", admin=True))
    alice = User(hs, await register(hs, "mcalice"))
    bob = User(hs, await register(hs, "mcbob"))
    carol = User(hs, await register(hs, "mccarol"))

    left = await alice.create_room()
    joined = await bob.create_room()
    invited = await bob.create_room(preset="private_chat")
    await alice.join(left)  # creator already joined: a second join (profile change) is not a new room
    await bob.join(left)
    await bob.leave(left)
    await alice.join(joined)
    await bob.invite(invited, alice.user_id)
    await bob.invite(invited, carol.user_id)
    await alice.invite(left, carol.user_id)

    body = await admin.get(f"{V1}/users/{q(alice.user_id)}/memberships")
    assert body == {"memberships": {left: "join", joined: "join", invited: "invite"}}, body
    body = await admin.get(f"{V1}/users/{q(bob.user_id)}/memberships")
    assert body == {"memberships": {left: "leave", joined: "join", invited: "join"}}, body

    # bob invited alice and carol; alice invited carol.
    assert await admin.get(f"{V1}/users/{q(bob.user_id)}/sent_invite_count") == {"invite_count": 2}
    assert await admin.get(f"{V1}/users/{q(alice.user_id)}/sent_invite_count", from_ts="0") == {
        "invite_count": 1
    }
    assert await admin.get(f"{V1}/users/{q(carol.user_id)}/sent_invite_count") == {"invite_count": 0}
    # Rooms joined, counting the one bob has left since.
    assert await admin.get(f"{V1}/users/{q(bob.user_id)}/cumulative_joined_room_count") == {
        "cumulative_joined_room_count": 3
    }
    assert await admin.get(f"{V1}/users/{q(alice.user_id)}/cumulative_joined_room_count") == {
        "cumulative_joined_room_count": 2
    }
    # from_ts in the future: nothing since.
    future = str(2**50)
    assert await admin.get(f"{V1}/users/{q(bob.user_id)}/sent_invite_count", from_ts=future) == {
        "invite_count": 0
    }
    assert await admin.get(f"{V1}/users/{q(bob.user_id)}/cumulative_joined_room_count", from_ts=future) == {
        "cumulative_joined_room_count": 0
    }


@pytest.mark.parametrize("tail", ["memberships", "sent_invite_count", "cumulative_joined_room_count"])
async def test_bad_input_and_access(hs: Any, tail: str) -> None:
    admin = User(hs, await register(hs, admin=True))
    user = User(hs, await register(hs))
    status, err = await user.request("GET", f"{V1}/users/{q(admin.user_id)}/{tail}", None, None)
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
    status, err = await admin.request(
        "GET", f"{V1}/users/{q('@someone:elsewhere.example')}/{tail}", None, None
    )
    assert status == 400, err
    status, err = await admin.request("GET", f"{V1}/users/{q('not-a-user-id')}/{tail}", None, None)
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")
    if tail != "memberships":
        status, err = await admin.request(
            "GET", f"{V1}/users/{q(user.user_id)}/{tail}", None, None, from_ts="-1"
        )
        assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")
