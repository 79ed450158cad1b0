"""Message retention (MSC1763, Synapse's `retention` config) with a fake clock: the server default,
a room's m.room.retention, the allowed bounds; expired events hidden from /messages, /sync,
/context, /search and /event before the purge; gone from storage after the purge job, with state
kept, relations and media-only-used-by-them deleted, and the JSON-lines export written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config.errors import ConfigError
from homeserver.config.sections import HomeserverConfig
from homeserver.core.clock import FakeClock

from ..conftest import make_config, services_of
from .compliance_helpers import V3, User, q

DAY = 24 * 3600 * 1000


async def _start(aiohttp_client: Any, config: HomeserverConfig) -> tuple[Any, FakeClock]:
    clock = FakeClock()
    client = await aiohttp_client(create_app_from_config(config, clock=clock))
    return client, clock


def _bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


async def _purge(client: Any) -> list[dict[str, Any]]:
    services = services_of(client)
    jobs = await services.retention.schedule_purges()
    finished = [await services.jobs.wait(job.job_id) for job in jobs]
    assert all(job.status == "complete" for job in finished), finished
    return [dict(job.progress) for job in finished]


async def test_server_default_hides_then_purges(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig], tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    config = engine_config(
        retention={
            "enabled": True,
            "default_policy": {"max_lifetime": "30d"},
            "export_dir": str(archive),
        }
    )
    client, clock = await _start(aiohttp_client, config)
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    room = await alice.create_room(preset="public_chat", name="반 공지")
    await bob.join(room)
    old = await alice.say(room, "old notice 숙제")
    mxc = await alice.upload(b"\x89PNG old picture")
    image = await alice.send(room, {"msgtype": "m.image", "body": "pic.png", "url": mxc})
    edit = await alice.send(
        room,
        {
            "msgtype": "m.text",
            "body": "* old notice edited",
            "m.new_content": {"msgtype": "m.text", "body": "old notice edited"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": old},
        },
    )
    kept_mxc = await alice.upload(b"\x89PNG avatar still used")
    await alice.state(room, "m.room.avatar", {"url": kept_mxc})

    clock.advance(31 * DAY)
    # The edit is older than 30 days too; a fresh reaction to an expired message goes with it.
    reaction = await bob.send(
        room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": old, "key": "👍"}}, "m.reaction"
    )
    new = await bob.say(room, "new notice 숙제")

    # Hidden from every read path before any purge.
    for user in (alice, bob):
        assert _bodies(await user.messages(room)) == ["new notice 숙제"]
        assert _bodies(await user.timeline(room)) == ["new notice 숙제"]
        found = await user.search("숙제")
        assert [r["result"]["event_id"] for r in found["results"]] == [new]
        await user.call("GET", f"{V3}/rooms/{q(room)}/context/{q(old)}", expect=404)
        await user.call("GET", f"{V3}/rooms/{q(room)}/event/{q(image)}", expect=404)
    # State is never subject to retention.
    chunk = await alice.messages(room)
    assert {"m.room.create", "m.room.name", "m.room.avatar"} <= {e["type"] for e in chunk}

    progress = await _purge(client)
    assert sum(p["deleted"] for p in progress) == 4  # old, image, edit and the reaction to old
    events = services_of(client).events
    for event_id in (old, image, edit, reaction):
        events.invalidate(event_id)
        assert await events.get_event(event_id) is None
    assert await events.get_event(new) is not None
    # Media only the purged events used is gone; the room avatar's stays.
    assert await alice.download_status(mxc) == 404
    assert await alice.download_status(kept_mxc) == 200

    # The export holds the purged events as JSON lines, one file per room.
    files = list(archive.iterdir())
    assert len(files) == 1
    exported = [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines()]
    assert {e["event_id"] for e in exported} == {old, image, edit, reaction}
    assert any(e["content"].get("body") == "old notice 숙제" for e in exported)

    # The room still works: state intact, new members join, messages flow.
    state = await alice.call("GET", f"{V3}/rooms/{q(room)}/state")
    assert {"m.room.create", "m.room.power_levels", "m.room.name", "m.room.avatar"} <= {
        e["type"] for e in state
    }
    carol = await User.new(client, "carol")
    await carol.join(room)
    await carol.say(room, "hello")
    assert _bodies(await bob.messages(room)) == ["hello", "new notice 숙제"]
    assert _bodies(await bob.timeline(room)) == ["new notice 숙제", "hello"]
    # A second run finds nothing more to delete.
    assert [p.get("deleted", 0) for p in await _purge(client)] == [0]


async def test_room_policy_overrides_default_and_other_rooms_are_untouched(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = make_config(tmp_path, retention={"enabled": True})  # no server default
    client, clock = await _start(aiohttp_client, config)
    alice = await User.new(client, "alice")
    short = await alice.create_room(preset="private_chat")
    await alice.state(short, "m.room.retention", {"max_lifetime": DAY})
    forever = await alice.create_room(preset="private_chat")
    await alice.say(short, "short-lived")
    await alice.say(forever, "kept")
    clock.advance(2 * DAY)
    await alice.say(short, "fresh")
    assert _bodies(await alice.messages(short)) == ["fresh"]
    assert _bodies(await alice.messages(forever)) == ["kept"]
    progress = await _purge(client)
    assert [p["deleted"] for p in progress] == [1]  # only the short room has a policy
    assert _bodies(await alice.messages(forever)) == ["kept"]
    assert _bodies(await alice.messages(short)) == ["fresh"]


async def test_allowed_bounds_cap_a_room_policy(aiohttp_client: Any, tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        retention={
            "enabled": True,
            "default_policy": {"max_lifetime": "30d"},
            "allowed_lifetime_min": "7d",
            "allowed_lifetime_max": "60d",
        },
    )
    client, clock = await _start(aiohttp_client, config)
    alice = await User.new(client, "alice")
    brief = await alice.create_room()
    await alice.state(brief, "m.room.retention", {"max_lifetime": 3600 * 1000})  # 1h, raised to 7d
    long = await alice.create_room()
    await alice.state(long, "m.room.retention", {"max_lifetime": 365 * DAY})  # capped to 60d
    await alice.say(brief, "brief")
    await alice.say(long, "long")
    clock.advance(2 * DAY)
    await alice.say(brief, "later")
    await alice.say(long, "later")
    assert _bodies(await alice.messages(brief)) == ["later", "brief"]
    clock.advance(6 * DAY)
    assert _bodies(await alice.messages(brief)) == ["later"]
    clock.advance(53 * DAY)  # 61 days after "long", 59 after "later"
    assert _bodies(await alice.messages(long)) == ["later"]


async def test_retention_disabled_keeps_everything(aiohttp_client: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, retention={"enabled": False, "default_policy": {"max_lifetime": "1d"}})
    client, clock = await _start(aiohttp_client, config)
    alice = await User.new(client, "alice")
    room = await alice.create_room()
    await alice.say(room, "old")
    clock.advance(10 * DAY)
    await alice.say(room, "new")
    assert _bodies(await alice.messages(room)) == ["new", "old"]
    assert await services_of(client).retention.schedule_purges() == []


async def test_purge_jobs_split_rooms_by_max_lifetime(aiohttp_client: Any, tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        retention={
            "enabled": True,
            "default_policy": {"max_lifetime": "30d"},
            "purge_jobs": [
                {"longest_max_lifetime": "3d", "interval": "12h"},
                {"shortest_max_lifetime": "3d", "interval": "1d"},
            ],
        },
    )
    client, _clock = await _start(aiohttp_client, config)
    services = services_of(client)
    short_spec, long_spec = services.config.compliance.retention.purge_jobs
    assert (short_spec.interval, long_spec.interval) == (12 * 3600 * 1000, DAY)
    alice = await User.new(client, "alice")
    short = await alice.create_room()
    await alice.state(short, "m.room.retention", {"max_lifetime": DAY})
    default = await alice.create_room()
    jobs = await services.retention.schedule_purges(short_spec)
    assert [job.subject for job in jobs] == [short]
    for job in jobs:
        await services.jobs.wait(job.job_id)
    jobs = await services.retention.schedule_purges(long_spec)
    assert [job.subject for job in jobs] == [default]
    for job in jobs:
        await services.jobs.wait(job.job_id)


def test_retention_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="min_lifetime"):
        make_config(tmp_path, retention={"default_policy": {"min_lifetime": "2d", "max_lifetime": "1d"}})
    with pytest.raises(ConfigError, match="allowed_lifetime_min"):
        make_config(tmp_path, retention={"allowed_lifetime_min": "2d", "allowed_lifetime_max": "1d"})
    with pytest.raises(ConfigError, match=r"retention\.purge_jobs"):
        make_config(tmp_path, retention={"purge_jobs": [{"interval": "often"}]})
