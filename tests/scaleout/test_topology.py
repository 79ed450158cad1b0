"""main + 2 client_readers + pusher as processes behind an aiohttp front door (tests/scaleout/router.py).

matrix-nio registers, creates a room, sends and syncs through the front door while /sync lands on
the readers; a reader killed with SIGKILL mid-load loses nothing for a client that reconnects to
the other; a Redis restart is survived (the workers catch up from the database).
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nio
import pytest
import yaml
from aiohttp import web

from synapse_compat_tests.launcher import free_port
from tests.scaleout.router import make_router
from tests.scaleout.topology import SECRET, Topology, start_topology

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topo = start_topology(tmp_path_factory.mktemp("scaleout"))
    try:
        yield topo
    finally:
        topo.stop()


@pytest.fixture
async def front_door(topology: Topology) -> AsyncIterator[str]:
    app = make_router(topology.main.base_url, [w.url for w in topology.readers])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _client(base: str) -> nio.AsyncClient:
    localpart = f"w{secrets.token_hex(5)}"
    client = nio.AsyncClient(base, localpart)
    registered = await client.register(localpart, PASSWORD)
    assert isinstance(registered, nio.RegisterResponse), registered
    return client


async def _messages_seen(client: nio.AsyncClient, room_id: str, want: set[str], rounds: int = 60) -> set[str]:
    seen: set[str] = set()
    for _ in range(rounds):
        # a timeline long enough that nothing is cut off as `limited` (else /messages fills gaps)
        resp = await client.sync(timeout=3000, sync_filter={"room": {"timeline": {"limit": 200}}})
        if isinstance(resp, nio.SyncResponse) and room_id in resp.rooms.join:
            for event in resp.rooms.join[room_id].timeline.events:
                if isinstance(event, nio.RoomMessageText):
                    seen.add(event.body)
        if want <= seen:
            break
    return seen


async def test_nio_through_the_front_door(topology: Topology, front_door: str) -> None:
    alice, bob = await _client(front_door), await _client(front_door)
    try:
        created = await alice.room_create(invite=[bob.user_id])
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        await bob.sync(timeout=0)
        assert isinstance(await bob.join(room), nio.JoinResponse)
        await bob.sync(timeout=0)
        # bob long-polls on a reader; alice's send commits on main and reaches it
        sent = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hello workers"})
        assert isinstance(sent, nio.RoomSendResponse), sent
        assert await _messages_seen(bob, room, {"hello workers"}) == {"hello workers"}
        # typing set through the front door (main) shows in a sync served by a reader
        assert isinstance(await alice.room_typing(room, True, 10000), nio.RoomTypingResponse)
        for _ in range(20):
            resp = await bob.sync(timeout=3000)
            typing = (
                [
                    e
                    for e in resp.rooms.join.get(room, nio.rooms.MatrixRoom).ephemeral  # type: ignore[attr-defined]
                    if isinstance(e, nio.TypingNoticeEvent)
                ]
                if room in resp.rooms.join
                else []
            )
            if typing and alice.user_id in typing[-1].users:
                break
        else:
            raise AssertionError("typing never reached the reader")
    finally:
        await alice.close()
        await bob.close()


async def test_sync_is_served_by_readers(topology: Topology, front_door: str) -> None:
    client = await _client(front_door)
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {client.access_token}"}
            async with http.get(f"{front_door}/_matrix/client/v3/sync", headers=headers) as resp:
                assert resp.status == 200
                assert resp.headers["X-Upstream"] in [w.url for w in topology.readers]
            # a write sent straight to a reader is forwarded to main
            reader = topology.readers[0].url
            async with http.post(f"{reader}/_matrix/client/v3/createRoom", json={}, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["room_id"].startswith("!")
            # the replication API exists only on main and wants the secret
            async with http.get(f"{reader}/_homeserver/replication/v1/typing") as resp:
                assert resp.status == 404
                assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"
            url = f"http://127.0.0.1:{topology.main_replication_port}/_homeserver/replication/v1/typing"
            async with http.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 403
            async with http.get(url) as resp:
                assert resp.status == 401
            async with http.get(url, headers={"Authorization": f"Bearer {SECRET}"}) as resp:
                assert resp.status == 200 and "position" in await resp.json()
    finally:
        await client.close()


def _run_worker(topology: Topology, tmp_path: Path, **changes: object) -> subprocess.CompletedProcess[str]:
    config = topology.worker_config("client_reader", "bad", free_port())
    config.update(changes)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    args = [sys.executable, "-m", "homeserver", "run", "--config", str(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_wrong_secret_is_refused(topology: Topology, tmp_path: Path) -> None:
    result = _run_worker(topology, tmp_path, worker_replication_secret="nope")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"error: the main process at http://127.0.0.1:{topology.main_replication_port} "
        "refused this worker: wrong worker_replication_secret"
    ), result.stderr


def test_unknown_role_is_refused(topology: Topology, tmp_path: Path) -> None:
    result = _run_worker(topology, tmp_path, worker_role="sync_everything")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "configuration error: worker_app: unknown worker role 'sync_everything' "
            "(roles: main, client_reader"
        )
    ), result.stderr


def test_unknown_role_on_the_command_line(topology: Topology, tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(yaml.safe_dump(topology.main.config))
    args = [sys.executable, "-m", "homeserver", "run", "--config", str(path), "--worker", "writer"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "configuration error: worker_app: unknown worker role 'writer' (roles: main, client_reader, "
        "federation_inbound, federation_sender, pusher, appservice, media, background)"
    ), result.stderr


def test_redis_down_at_start_is_refused(topology: Topology, tmp_path: Path) -> None:
    result = _run_worker(
        topology, tmp_path, redis={"enabled": True, "host": "127.0.0.1", "port": free_port()}
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot reach Redis at 127.0.0.1:"), (
        result.stderr
    )


async def test_kill_reader_mid_load_loses_nothing(topology: Topology, front_door: str) -> None:
    sender, reader_client = await _client(front_door), await _client(front_door)
    extra = topology.start_worker("client_reader", f"victim{secrets.token_hex(2)}")
    try:
        created = await sender.room_create(invite=[reader_client.user_id])
        room = created.room_id
        await reader_client.sync(timeout=0)
        await reader_client.join(room)
        await reader_client.sync(timeout=0)
        # the receiving client talks to the victim directly until it dies, then to the front door
        victim = nio.AsyncClient(
            extra.url, reader_client.user_id, config=nio.AsyncClientConfig(max_timeouts=1, request_timeout=10)
        )
        victim.restore_login(reader_client.user_id, reader_client.device_id, reader_client.access_token)
        victim.next_batch = reader_client.next_batch
        sent: set[str] = set()
        seen: set[str] = set()

        async def send_all() -> None:
            for i in range(40):
                body = f"m{i}"
                resp = await sender.room_send(room, "m.room.message", {"msgtype": "m.text", "body": body})
                assert isinstance(resp, nio.RoomSendResponse), resp
                sent.add(body)
                if i == 15:
                    extra.kill9()
                await asyncio.sleep(0.02)

        async def receive_until_dead() -> None:
            while True:
                try:
                    resp = await victim.sync(timeout=2000)
                except Exception:  # the reader is gone (connection refused / reset)
                    return
                if not isinstance(resp, nio.SyncResponse):
                    return
                if room in resp.rooms.join:
                    seen.update(
                        e.body
                        for e in resp.rooms.join[room].timeline.events
                        if isinstance(e, nio.RoomMessageText)
                    )

        await asyncio.gather(send_all(), asyncio.wait_for(receive_until_dead(), 60))
        # reconnect through the front door with the last token the dead reader gave
        reader_client.next_batch = victim.next_batch
        seen |= await _messages_seen(reader_client, room, sent - seen)
        assert seen == sent, f"lost {sorted(sent - seen)}"
        await victim.close()
    finally:
        topology.workers.remove(extra) if extra in topology.workers else None
        extra.stop()
        await sender.close()
        await reader_client.close()


async def test_redis_restart_workers_resume(topology: Topology, front_door: str) -> None:
    alice, bob = await _client(front_door), await _client(front_door)
    try:
        room = (await alice.room_create(invite=[bob.user_id])).room_id
        await bob.sync(timeout=0)
        await bob.join(room)
        await bob.sync(timeout=0)
        topology.redis.stop()
        # commits while Redis is down: announcements are lost, the database has them
        for i in range(5):
            assert isinstance(
                await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": f"down{i}"}),
                nio.RoomSendResponse,
            )
        topology.redis.start()
        for i in range(5):
            await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": f"up{i}"})
        want = {f"down{i}" for i in range(5)} | {f"up{i}" for i in range(5)}
        assert await _messages_seen(bob, room, want) >= want
    finally:
        await alice.close()
        await bob.close()


async def test_presence_across_workers(topology: Topology, front_door: str) -> None:
    # alice's /sync on reader 1 keeps her online on main; bob's /sync on reader 2 shows it
    alice = await _client(front_door)
    bob = await _client(front_door)
    on_reader: list[nio.AsyncClient] = []
    try:
        room = (await alice.room_create(invite=[bob.user_id])).room_id
        await bob.sync(timeout=0)
        await bob.join(room)
        for user, reader in ((alice, topology.readers[0]), (bob, topology.readers[1])):
            pinned = nio.AsyncClient(reader.url, user.user_id)
            pinned.restore_login(user.user_id, user.device_id, user.access_token)
            on_reader.append(pinned)
        alice_r, bob_r = on_reader
        await bob_r.sync(timeout=0)
        await alice_r.sync(timeout=0, set_presence="online")
        for _ in range(40):
            resp = await bob_r.sync(timeout=3000)
            if isinstance(resp, nio.SyncResponse) and any(
                e.user_id == alice.user_id and e.presence == "online" for e in resp.presence_events
            ):
                break
        else:
            raise AssertionError("alice's presence never reached bob's reader")
    finally:
        for client in (*on_reader, alice, bob):
            await client.close()


async def test_pusher_worker_delivers(topology: Topology, front_door: str) -> None:
    """pusher_instances: [pusher1]: main leaves push to the pusher worker, which hears of the
    pusher (invalidation), the message (events stream) and the read receipt (receipts stream)."""
    received: list[dict[str, object]] = []

    async def notify(request: web.Request) -> web.Response:
        received.append((await request.json())["notification"])
        return web.json_response({"rejected": []})

    gateway = web.Application()
    gateway.router.add_post("/_matrix/push/v1/notify", notify)
    runner = web.AppRunner(gateway)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    alice, bob = await _client(front_door), await _client(front_door)
    try:
        room = (await alice.room_create(invite=[bob.user_id])).room_id
        await bob.sync(timeout=0)
        await bob.join(room)
        async with aiohttp.ClientSession() as http:
            body = {
                "kind": "http",
                "app_id": "org.example",
                "pushkey": "key1",
                "app_display_name": "X",
                "device_display_name": "Y",
                "lang": "en",
                "data": {"url": f"http://127.0.0.1:{port}/_matrix/push/v1/notify"},
            }
            headers = {"Authorization": f"Bearer {bob.access_token}"}
            async with http.post(
                f"{front_door}/_matrix/client/v3/pushers/set", json=body, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
        await asyncio.sleep(0.5)  # the worker restarts the pusher from the stored row
        sent = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "push me"})
        assert isinstance(sent, nio.RoomSendResponse)
        for _ in range(100):
            if any(n.get("event_id") == sent.event_id for n in received):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no push for {sent.event_id}: {received}")
        assert isinstance(
            await bob.room_read_markers(room, sent.event_id, sent.event_id), nio.RoomReadMarkersResponse
        )
        for _ in range(100):  # the badge update, from the receipts stream
            if received[-1].get("counts") == {"unread": 0} and "event_id" not in received[-1]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no badge update: {received}")
    finally:
        await alice.close()
        await bob.close()
        await runner.cleanup()


async def test_logout_on_main_reaches_the_readers(topology: Topology, front_door: str) -> None:
    client = await _client(front_door)
    headers = {"Authorization": f"Bearer {client.access_token}"}
    try:
        async with aiohttp.ClientSession() as http:
            for reader in topology.readers:  # both readers cache the token
                async with http.get(f"{reader.url}/_matrix/client/v3/account/whoami", headers=headers) as r:
                    assert r.status == 200
            async with http.post(f"{front_door}/_matrix/client/v3/logout", headers=headers, json={}) as r:
                assert r.status == 200
            for reader in topology.readers:
                for _ in range(50):
                    async with http.get(
                        f"{reader.url}/_matrix/client/v3/account/whoami", headers=headers
                    ) as r:
                        if r.status == 401:
                            assert (await r.json())["errcode"] == "M_UNKNOWN_TOKEN"
                            break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError(f"{reader.name} still accepts the logged-out token")
    finally:
        await client.close()


async def test_media_and_federation_roles(topology: Topology, front_door: str) -> None:
    media = topology.start_worker("media", f"media{secrets.token_hex(2)}")
    inbound = topology.start_worker("federation_inbound", f"fed{secrets.token_hex(2)}")
    client = await _client(front_door)
    headers = {"Authorization": f"Bearer {client.access_token}"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{media.url}/_matrix/media/v3/upload?filename=a.txt",
                data=b"hello media worker",
                headers={**headers, "Content-Type": "text/plain"},
            ) as r:
                assert r.status == 200, await r.text()
                mxc = (await r.json())["content_uri"]
            server_name, media_id = mxc.removeprefix("mxc://").split("/")
            url = f"{media.url}/_matrix/client/v1/media/download/{server_name}/{media_id}"
            async with http.get(url, headers=headers) as r:
                assert r.status == 200 and await r.read() == b"hello media worker"
            # a media worker serves no client API
            async with http.get(f"{media.url}/_matrix/client/v3/account/whoami", headers=headers) as r:
                assert r.status == 404 and (await r.json())["errcode"] == "M_UNRECOGNIZED"
            # federation_inbound answers federation reads itself
            async with http.get(f"{inbound.url}/_matrix/federation/v1/version") as r:
                assert r.status == 200 and "server" in await r.json()
            async with http.get(f"{inbound.url}/_matrix/client/v3/sync", headers=headers) as r:
                assert r.status == 404
    finally:
        for worker in (media, inbound):
            topology.workers.remove(worker)
            worker.stop()
        await client.close()


async def test_unread_counts_on_a_reader(topology: Topology, front_door: str) -> None:
    """Main keeps counts current inside its event transaction; a reader must recount after new
    events and after a read receipt, never serve a stale cached count."""
    alice, bob = await _client(front_door), await _client(front_door)
    pinned = nio.AsyncClient(topology.readers[0].url, bob.user_id)
    pinned.restore_login(bob.user_id, bob.device_id, bob.access_token)

    async def count(want: int) -> None:
        seen = []
        for _ in range(20):
            resp = await pinned.sync(timeout=2000)
            if isinstance(resp, nio.SyncResponse) and room in resp.rooms.join:
                seen.append(resp.rooms.join[room].unread_notifications.notification_count)
                if seen[-1] == want:
                    return
        raise AssertionError(f"unread count never became {want}: {seen}")

    try:
        room = (await alice.room_create(is_direct=True, invite=[bob.user_id])).room_id
        await bob.sync(timeout=0)
        await bob.join(room)
        first = await pinned.sync(timeout=0)
        assert isinstance(first, nio.SyncResponse), first
        if room in first.rooms.join:  # the reader had the join already
            assert first.rooms.join[room].unread_notifications.notification_count == 0
        else:
            await count(0)
        # the count is cached on the reader now
        last = None
        for i in range(2):
            last = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": f"n{i}"})
        await count(2)
        assert isinstance(last, nio.RoomSendResponse)
        await bob.room_read_markers(room, last.event_id, last.event_id)
        await count(0)
    finally:
        for client in (pinned, alice, bob):
            await client.close()


@pytest.mark.node
async def test_matrix_js_sdk_through_the_front_door(topology: Topology, front_door: str) -> None:
    """matrix-js-sdk's two-client scenario (tests/clients/js/sync_basic.mjs) unchanged through
    the front door: its syncs land on the readers, its sends on main."""
    from tests.clients.test_js_e2ee import JS_DIR, NODE, _require_node_modules

    _require_node_modules()
    alice, bob = await _client(front_door), await _client(front_door)
    await alice.close()
    await bob.close()
    env = {
        "PATH": "/usr/bin:/bin",
        "HS_BASE_URL": front_door,
        "ALICE_USER": alice.user_id[1:].split(":")[0],
        "BOB_USER": bob.user_id[1:].split(":")[0],
        "USER_PASSWORD": PASSWORD,
    }
    # The front door runs on this event loop: wait for node without blocking it.
    proc = await asyncio.create_subprocess_exec(
        str(NODE), "sync_basic.mjs", cwd=JS_DIR, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    text = output.decode(errors="replace")[-20000:]
    assert proc.returncode == 0, text
    assert "OK" in text, text


async def test_websocket_sync_on_a_reader(topology: Topology, front_door: str) -> None:
    """docs/websocket.md on a client_reader: a message sent through main is pushed to the
    socket (woken by replication), and a send over the socket is forwarded to main."""
    from appservices.websocket_sync import WebSocketSync

    alice, bob = await _client(front_door), await _client(front_door)
    try:
        room = (await alice.room_create(invite=[bob.user_id])).room_id
        await bob.sync(timeout=0)
        await bob.join(room)
        await bob.sync(timeout=0)

        def bodies(sync: dict[str, object]) -> list[str]:
            joined = sync.get("rooms", {}).get("join", {})  # type: ignore[attr-defined]
            events = joined.get(room, {}).get("timeline", {}).get("events", [])
            return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]

        async with WebSocketSync(topology.readers[0].url, bob.access_token, since=bob.next_batch) as ws:
            await ws.next_sync(wait_s=30)  # the first frame: the delta since bob's token
            sent = await alice.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": "to the socket"}
            )
            assert isinstance(sent, nio.RoomSendResponse), sent
            seen: list[str] = []
            while "to the socket" not in seen:
                seen += bodies(await ws.next_sync(wait_s=30))
            await ws.send_message(room, {"msgtype": "m.text", "body": "from the socket"}, txn_id="ws1")
        assert await _messages_seen(alice, room, {"from the socket"}) == {"to the socket", "from the socket"}
    finally:
        await alice.close()
        await bob.close()
