"""GDPR erasure through `POST /account/deactivate` with `erase: true`, and the admin data export:
members who were joined when the erased user spoke keep the original (as Synapse), later members
see the redacted form, search no longer finds the text, and the user's media, profile, account
data, keys, pushers and directory entry are gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.app import create_app_from_config
from homeserver.config.sections import HomeserverConfig

from ..conftest import services_of
from .compliance_helpers import V3, User, q

ADMIN = "/_synapse/admin/v1"


async def _deactivate(user: User, erase: bool) -> None:
    session = (await user.call("POST", f"{V3}/account/deactivate", {}, expect=401))["session"]
    auth = {"type": "m.login.password", "session": session, "user": user.user_id, "password": user.password}
    await user.call("POST", f"{V3}/account/deactivate", {"auth": auth, "erase": erase})


async def test_erased_user_is_redacted_for_new_members_and_their_data_is_gone(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]
) -> None:
    client = await aiohttp_client(create_app_from_config(engine_config()))
    admin = await User.new(client, "admin", admin=True)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await bob.create_room(preset="public_chat")
    await alice.join(room)
    mxc = await alice.upload(b"\x89PNG alice's picture")
    await alice.call("PUT", f"{V3}/profile/{q(alice.user_id)}/avatar_url", {"avatar_url": mxc})
    secret = await alice.say(room, "my phone is 비밀 010-1111-2222")
    await alice.call("PUT", f"{V3}/user/{q(alice.user_id)}/account_data/m.secret", {"x": 1})
    await alice.call(
        "POST",
        f"{V3}/pushers/set",
        {
            "kind": "http",
            "app_id": "app",
            "pushkey": "key",
            "app_display_name": "App",
            "device_display_name": "phone",
            "lang": "ko",
            "data": {"url": "https://push.example/_matrix/push/v1/notify"},
        },
    )

    master = {"user_id": alice.user_id, "usage": ["master"], "keys": {"ed25519:" + "A" * 43: "A" * 43}}
    await alice.call("POST", f"{V3}/keys/device_signing/upload", {"master_key": master})
    backup = {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abc"}}
    await alice.call("POST", f"{V3}/room_keys/version", backup)

    # The export before erasure holds what the server keeps about her.
    export = await admin.call("GET", f"{ADMIN}/users/{q(alice.user_id)}/export")
    assert export["user_id"] == alice.user_id
    assert export["profile"]["avatar_url"] == mxc
    assert any(e["content"].get("body", "").startswith("my phone") for e in export["events"])
    assert any(a["type"] == "m.secret" for a in export["account_data"])
    assert [p["pushkey"] for p in export["pushers"]] == ["key"]
    assert len(export["media"]) == 1
    assert {"room_id": room, "membership": "join"} in export["rooms"]
    await alice.call("GET", f"{ADMIN}/users/{q(alice.user_id)}/export", expect=403)
    await admin.call("GET", f"{ADMIN}/users/{q('@nobody:test.local')}/export", expect=404)

    db = services_of(client).db
    for table in ("e2e_cross_signing_keys", "e2e_room_keys_versions", "user_directory"):
        count = await db.fetchval(f"SELECT COUNT(*) FROM {table} WHERE user_id = $1", alice.user_id)
        assert count > 0, table  # present before, so the check after erasure means something

    await _deactivate(alice, erase=True)

    # A member joined at the time keeps the original; a later member sees the redacted form.
    carol = await User.new(client, "carol")
    await carol.join(room)
    seen_by_bob = {e["event_id"]: e for e in await bob.messages(room)}
    seen_by_carol = {e["event_id"]: e for e in await carol.messages(room)}
    assert seen_by_bob[secret]["content"]["body"].startswith("my phone")
    assert seen_by_carol[secret]["content"] == {}
    event = await carol.call("GET", f"{V3}/rooms/{q(room)}/event/{q(secret)}")
    assert event["content"] == {}
    assert [r["result"]["event_id"] for r in (await carol.search("비밀"))["results"]] == []
    assert [r["result"]["event_id"] for r in (await bob.search("비밀"))["results"]] == [secret]

    # Her media, profile, account data, keys, pushers and directory entry are gone.
    assert await bob.download_status(mxc) == 404
    profile = await bob.call("GET", f"{V3}/profile/{q(alice.user_id)}", expect=None)
    assert "avatar_url" not in profile and "displayname" not in profile
    services = services_of(client)
    after = await services.erasure.store.export_user(alice.user_id)
    assert after["account_data"] == [] and after["pushers"] == [] and after["media"] == []
    assert after["devices"] == []
    for table in ("e2e_device_keys", "e2e_cross_signing_keys", "e2e_room_keys_versions", "user_directory"):
        count = await db.fetchval(f"SELECT COUNT(*) FROM {table} WHERE user_id = $1", alice.user_id)
        assert count == 0, table
    found = await bob.call("POST", f"{V3}/user_directory/search", {"search_term": "alice"})
    assert found["results"] == []


async def test_deactivation_without_erase_keeps_messages(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]
) -> None:
    client = await aiohttp_client(create_app_from_config(engine_config()))
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await bob.create_room(preset="public_chat")
    await alice.join(room)
    said = await alice.say(room, "still here")
    await _deactivate(alice, erase=False)
    carol = await User.new(client, "carol")
    await carol.join(room)
    seen = {e["event_id"]: e for e in await carol.messages(room)}
    assert seen[said]["content"]["body"] == "still here"
