"""HTTP pusher delivery (docs/push.md) against a fake push gateway on a real socket: the body
apps rely on (Synapse's), event_id_only, rejected pushkeys, backoff with a fake clock, restarts
that deliver exactly once, badge updates after reads, and who must not be notified."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config.sections import HomeserverConfig
from homeserver.core.clock import FakeClock

from ..conftest import make_config, services_of
from .compliance_helpers import V3, User, q
from .push_helpers import (
    NOTIFY,
    FakeGateway,
    dm,
    leave,
    list_pushers,
    pusher_body,
    read_up_to,
    set_pusher,
    settle,
)

LOOPBACK = ["127.0.0.0/8"]


async def _start(
    aiohttp_client: Any, aiohttp_server: Any, config: HomeserverConfig
) -> tuple[Any, FakeClock, FakeGateway, str]:
    gateway = FakeGateway()
    server = await aiohttp_server(gateway.app)
    clock = FakeClock()
    client = await aiohttp_client(create_app_from_config(config, clock=clock))
    return client, clock, gateway, f"http://127.0.0.1:{server.port}{NOTIFY}"


async def test_dm_message_is_pushed_high_with_counts(
    aiohttp_client: Any, aiohttp_server: Any, engine_config: Callable[..., HomeserverConfig]
) -> None:
    client, _clock, gateway, url = await _start(
        aiohttp_client, aiohttp_server, engine_config(ip_range_whitelist=LOOPBACK)
    )
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url, extra="kept"))
    event_id = await alice.say(room, "내일 소풍 준비물 확인하세요")
    await settle(services)

    [notification] = gateway.notifications()
    assert notification["event_id"] == event_id and notification["id"] == event_id
    assert notification["room_id"] == room
    assert notification["type"] == "m.room.message"
    assert notification["sender"] == alice.user_id
    assert notification["sender_display_name"] == "alice"
    assert "room_name" not in notification  # a DM: the sender's name says it (as Synapse)
    assert notification["content"] == {"msgtype": "m.text", "body": "내일 소풍 준비물 확인하세요"}
    assert notification["prio"] == "high"  # one-to-one rule: sound tweak
    assert notification["counts"] == {"unread": 1}
    [device] = notification["devices"]
    assert device["app_id"] == "org.school.app" and device["pushkey"] == "key-1"
    assert device["data"] == {"extra": "kept"}  # the pusher's data without url
    assert device["tweaks"] == {"sound": "default"}
    assert isinstance(device["pushkey_ts"], int) and device["pushkey_ts"] < 10**11  # seconds

    # A second room with unread notifications: the badge counts rooms (Synapse's default).
    room2 = await dm(alice, bob)
    await alice.say(room2, "두 번째 방")
    await alice.say(room, "more")
    await settle(services)
    later = gateway.notifications()[1:]
    # The invite notifies too (membership, user_is_target); the badge counts the pending invite.
    assert [n["type"] for n in later] == ["m.room.member", "m.room.message", "m.room.message"]
    assert later[0]["membership"] == "invite" and later[0]["user_is_target"] is True
    assert [n["counts"]["unread"] for n in later] == [2, 2, 2]


async def test_group_message_is_low_prio_and_event_id_only_sends_ids(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    client, _clock, gateway, url = await _start(
        aiohttp_client, aiohttp_server, make_config(tmp_path, ip_range_whitelist=LOOPBACK)
    )
    services = services_of(client)
    alice, bob, carol = [await User.new(client, n) for n in ("alice", "bob", "carol")]
    room = await alice.create_room(preset="public_chat", name="3학년 2반")
    await bob.join(room)
    await carol.join(room)
    await set_pusher(bob, pusher_body(url, format="event_id_only"))
    await set_pusher(carol, pusher_body(url, pushkey="carol-key"))
    event_id = await alice.say(room, "공지")
    await settle(services)

    by_key = {n["devices"][0]["pushkey"]: n for n in gateway.notifications()}
    slim = by_key["key-1"]
    assert slim == {
        "event_id": event_id,
        "room_id": room,
        "counts": {"unread": 1},
        "prio": "low",
        "devices": [
            {
                "app_id": "org.school.app",
                "pushkey": "key-1",
                "pushkey_ts": slim["devices"][0]["pushkey_ts"],
                "data": {"format": "event_id_only"},
            }
        ],
    }
    full = by_key["carol-key"]
    assert full["prio"] == "low" and full["room_name"] == "3학년 2반" and full["content"]["body"] == "공지"
    assert full["devices"][0]["tweaks"] == {}

    # A mention highlights: high priority.
    await alice.say(room, "carol 확인 부탁해요")
    await settle(services)
    mention = [n for n in gateway.notifications() if n["devices"][0]["pushkey"] == "carol-key"][-1]
    assert mention["prio"] == "high" and mention["devices"][0]["tweaks"]["highlight"] is True


async def test_own_events_earlier_events_and_muted_rooms_are_not_pushed(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    client, _clock, gateway, url = await _start(
        aiohttp_client, aiohttp_server, make_config(tmp_path, ip_range_whitelist=LOOPBACK)
    )
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await alice.say(room, "before the pusher existed")
    await set_pusher(bob, pusher_body(url))
    await bob.say(room, "my own message")
    await settle(services)
    assert gateway.attempts == []

    # Muted room (a dont_notify room rule): nothing.
    await bob.call("PUT", f"{V3}/pushrules/global/room/{q(room)}", {"actions": ["dont_notify"]})
    await alice.say(room, "muted")
    await settle(services)
    assert gateway.attempts == []


async def test_rejected_pushkey_removes_the_pusher(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    client, _clock, gateway, url = await _start(
        aiohttp_client, aiohttp_server, make_config(tmp_path, ip_range_whitelist=LOOPBACK)
    )
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url, pushkey="other-key"))
    await set_pusher(bob, pusher_body(url))
    gateway.rejected = ["key-1", "not-ours"]
    await alice.say(room, "hello")
    await settle(services)
    assert len(gateway.received) == 2
    # Only the pusher whose pushkey was rejected goes; a pushkey we did not send is ignored.
    assert [p["pushkey"] for p in await list_pushers(bob)] == ["other-key"]
    assert list(services.pusher_pool.workers) == [(bob.user_id, "org.school.app", "other-key")]
    gateway.rejected = []
    await alice.say(room, "again")
    await settle(services)
    assert [n["devices"][0]["pushkey"] for n in gateway.notifications()[2:]] == ["other-key"]


async def test_gateway_down_retries_with_backoff_in_order(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    client, clock, gateway, url = await _start(
        aiohttp_client, aiohttp_server, make_config(tmp_path, ip_range_whitelist=LOOPBACK)
    )
    services = services_of(client)
    pool = services.pusher_pool
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url))
    gateway.status = 503
    first = await alice.say(room, "first")
    await settle(services)
    assert len(gateway.attempts) == 1
    second = await alice.say(room, "second")  # waits behind the failing one
    await settle(services)
    assert len(gateway.attempts) == 1

    # Backoff: 1 s, then 2 s, then 4 s (Synapse's HttpPusher).
    for wait_ms, attempts in ((999, 1), (1, 2), (1999, 2), (1, 3), (4000, 4)):
        clock.advance(wait_ms)
        pool.poke()
        await settle(services)
        assert len(gateway.attempts) == attempts, (wait_ms, attempts)
    stored = await services.pushers.store.get(bob.user_id, "org.school.app", "key-1")
    assert stored is not None and stored.failing_since is not None

    gateway.status = 200
    clock.advance(8000)
    pool.poke()
    await settle(services)
    assert [n["event_id"] for n in gateway.notifications()] == [first, second]
    stored = await services.pushers.store.get(bob.user_id, "org.school.app", "key-1")
    assert stored is not None and stored.failing_since is None


async def test_a_notification_failing_for_a_day_is_dropped(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    client, clock, gateway, url = await _start(
        aiohttp_client, aiohttp_server, make_config(tmp_path, ip_range_whitelist=LOOPBACK)
    )
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url))
    gateway.status = 500
    await alice.say(room, "lost")
    await settle(services)
    clock.advance(24 * 3600 * 1000)
    services.pusher_pool.poke()
    await settle(services)  # one more failure, past a day: given up
    gateway.status = 200
    later = await alice.say(room, "later")
    await settle(services)
    assert [n["event_id"] for n in gateway.notifications()] == [later]


async def test_restart_delivers_pending_notifications_exactly_once(
    aiohttp_client: Any, aiohttp_server: Any, engine_config: Callable[..., HomeserverConfig]
) -> None:
    config = engine_config(ip_range_whitelist=LOOPBACK)
    client, _clock, gateway, url = await _start(aiohttp_client, aiohttp_server, config)
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url))
    delivered = await alice.say(room, "delivered before the restart")
    await settle(services)
    gateway.status = 503
    pending = [await alice.say(room, f"pending {i}") for i in range(3)]
    await settle(services)
    await client.close()

    gateway.status = 200
    client = await aiohttp_client(create_app_from_config(config, clock=FakeClock()))
    await settle(services_of(client))
    assert [n["event_id"] for n in gateway.notifications()] == [delivered, *pending]

    # Restarting again sends nothing twice.
    await client.close()
    client = await aiohttp_client(create_app_from_config(config, clock=FakeClock()))
    await settle(services_of(client))
    assert len(gateway.received) == 4


async def test_badge_update_after_reading(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path) -> None:
    client, _clock, gateway, url = await _start(
        aiohttp_client, aiohttp_server, make_config(tmp_path, ip_range_whitelist=LOOPBACK)
    )
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url))
    await alice.say(room, "one")
    last = await alice.say(room, "two")
    await settle(services)
    assert [n["counts"]["unread"] for n in gateway.notifications()] == [1, 1]

    # Bob reads on another device (a second login, not the pusher's session).
    login = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "bob"},
        "password": bob.password,
    }
    laptop = User(client, await bob.call("POST", f"{V3}/login", login))
    assert laptop.token != bob.token
    await read_up_to(laptop, room, last)
    await settle(services)
    badge = gateway.notifications()[-1]
    assert badge["counts"] == {"unread": 0} and badge["prio"] == "low"
    assert "event_id" not in badge and "content" not in badge
    assert badge["devices"][0]["pushkey"] == "key-1" and "tweaks" not in badge["devices"][0]

    # The count did not change: no second badge update.
    await read_up_to(laptop, room, last)
    await settle(services)
    assert len(gateway.received) == 3


async def test_user_who_left_gets_nothing(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path) -> None:
    client, clock, gateway, url = await _start(
        aiohttp_client, aiohttp_server, make_config(tmp_path, ip_range_whitelist=LOOPBACK)
    )
    services = services_of(client)
    alice, bob, carol = [await User.new(client, n) for n in ("alice", "bob", "carol")]
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await carol.join(room)
    await set_pusher(bob, pusher_body(url))
    # Pending while the gateway is down; bob leaves before it comes back.
    gateway.status = 503
    await alice.say(room, "before leaving")
    await settle(services)
    await leave(bob, room)
    await alice.say(room, "after leaving")
    gateway.status = 200
    clock.advance(1000)
    services.pusher_pool.poke()
    await settle(services)
    assert gateway.received == []


async def test_gateway_in_a_private_range_is_refused_without_whitelist(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    client, _clock, gateway, url = await _start(aiohttp_client, aiohttp_server, make_config(tmp_path))
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url))
    await alice.say(room, "hello")
    await settle(services)
    assert gateway.attempts == []  # the SSRF guard refused to connect to 127.0.0.1
    stored = await services.pushers.store.get(bob.user_id, "org.school.app", "key-1")
    assert stored is not None and stored.failing_since is not None


@pytest.mark.parametrize("enabled", [False])
async def test_push_disabled_delivers_nothing(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, enabled: bool
) -> None:
    config = make_config(tmp_path, ip_range_whitelist=LOOPBACK, push={"enabled": enabled})
    client, _clock, gateway, url = await _start(aiohttp_client, aiohttp_server, config)
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url))
    await alice.say(room, "hello")
    await settle(services)
    assert gateway.attempts == [] and services.pusher_pool.workers == {}


async def test_badge_counts_messages_when_not_grouped_by_room(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    config = make_config(tmp_path, ip_range_whitelist=LOOPBACK, push={"group_unread_count_by_room": False})
    client, _clock, gateway, url = await _start(aiohttp_client, aiohttp_server, config)
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url))
    for text in ("one", "two", "three"):
        await alice.say(room, text)
        # The badge is the count when the notification is sent (as Synapse): one at a time.
        await settle(services)
    assert [n["counts"]["unread"] for n in gateway.notifications()] == [1, 2, 3]


async def test_include_content_false_leaves_content_out(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    config = make_config(tmp_path, ip_range_whitelist=LOOPBACK, push={"include_content": False})
    client, _clock, gateway, url = await _start(aiohttp_client, aiohttp_server, config)
    services = services_of(client)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await dm(alice, bob)
    await set_pusher(bob, pusher_body(url))
    await alice.say(room, "secret")
    await settle(services)
    [notification] = gateway.notifications()
    assert "content" not in notification and notification["type"] == "m.room.message"
