"""PostgreSQL restarted under main + 2 client_readers + pusher + federation_sender (issue #18).

The topology runs on a throwaway cluster (tests/pg_cluster.py) that the test stops while a client
sends through the front door and another long-polls /sync on the readers. While it is down every
request that needs it fails cleanly (503 M_UNKNOWN with Retry-After, never a 500); once it is
back every process recovers by itself, without a restart: sends commit on main, the readers'
/sync shows them (replication and catch-up resumed), nothing acknowledged is lost or duplicated
(messages counted on both ends), and no process logged a traceback.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from synapse_compat_tests.launcher import free_port
from tests.pg_cluster import DB_NAME, Cluster, throwaway_cluster
from tests.scaleout.router import make_router
from tests.scaleout.topology import Topology, start_topology

V3 = "/_matrix/client/v3"
TIMELINE = '{"room":{"timeline":{"limit":500}}}'


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as pg:
        yield pg


@pytest.fixture(scope="module")
def topology(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topo = start_topology(
        tmp_path_factory.mktemp("pgrestart"),
        database=cluster.database_config(),
        overrides={"federation_sender_instances": ["fedsender1"]},
    )
    try:
        # (no other server to send to: it follows its streams and reads the outbox through the outage)
        topo.start_worker("federation_sender", "fedsender1")
        yield topo
    finally:
        topo.stop()


@pytest.fixture
async def front_door(topology: Topology) -> AsyncIterator[str]:
    runner = web.AppRunner(make_router(topology.main.base_url, [w.url for w in topology.readers]))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str, token: str = "") -> None:
        self.http, self.base, self.token = http, base, token

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(
            method, self.base + path, json=body, params=params, headers=headers
        ) as resp:
            return resp.status, await resp.json(content_type=None), resp.headers

    def at(self, base: str) -> Api:
        return Api(self.http, base, self.token)


async def _register(api: Api) -> tuple[str, Api]:
    localpart = f"pg{secrets.token_hex(4)}"
    body = {"username": localpart, "password": "a long password", "auth": {"type": "m.login.dummy"}}
    status, resp, _ = await api.call("POST", f"{V3}/register", body)
    assert status == 200, resp
    return resp["user_id"], Api(api.http, api.base, resp["access_token"])


def _check_clean_failure(status: int, body: Any, headers: Any, what: str, problems: list[str]) -> None:
    """A request that could not be served while the database was down: 503 M_UNKNOWN with
    Retry-After is the only acceptable failure."""
    if status == 503 and body.get("errcode") == "M_UNKNOWN" and headers.get("Retry-After"):
        return
    problems.append(f"{what}: {status} {body}")


async def _bodies_since(api: Api, room_id: str, since: str, want: set[str], rounds: int = 40) -> list[str]:
    """Every message body in `room_id` after `since`, long-polling until `want` is all there."""
    bodies: list[str] = []
    for _ in range(rounds):
        status, body, _ = await api.call("GET", f"{V3}/sync", since=since, timeout="3000", filter=TIMELINE)
        assert status == 200, body
        since = body["next_batch"]
        room = body.get("rooms", {}).get("join", {}).get(room_id)
        if room is not None:
            assert not room["timeline"].get("limited"), "timeline cut: raise the filter's limit"
            bodies += [
                e["content"]["body"] for e in room["timeline"]["events"] if e["type"] == "m.room.message"
            ]
        if want <= set(bodies):
            break
    return bodies


async def _presence_row(cluster: Cluster, user_id: str) -> tuple[str, str | None] | None:
    conn = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="postgres", database=DB_NAME)
    try:
        row = await conn.fetchrow("SELECT state, status_msg FROM presence WHERE user_id = $1", user_id)
    finally:
        await conn.close()
    return None if row is None else (row[0], row[1])


async def test_postgres_restart_under_workers(cluster: Cluster, topology: Topology, front_door: str) -> None:
    async with aiohttp.ClientSession() as http:
        door = Api(http, front_door)
        alice_id, alice = await _register(door)
        bob_id, bob = await _register(door)
        status, body, _ = await alice.call("POST", f"{V3}/createRoom", {"invite": [bob_id]})
        assert status == 200, body
        room_id = body["room_id"]
        status, body, _ = await bob.call("POST", f"{V3}/join/{room_id}", {})
        assert status == 200, body
        status, body, _ = await bob.call("GET", f"{V3}/sync", filter=TIMELINE)
        assert status == 200, body
        since0 = body["next_batch"]

        acked: list[str] = []  # bodies of the sends main answered 200
        problems: list[str] = []  # any failure that is not a clean 503
        refused = {"send": 0, "sync": 0, "read": 0}  # clean 503s seen
        going = asyncio.Event()  # a few messages went through before the outage
        restarted = asyncio.Event()
        done = asyncio.Event()

        async def send_loop() -> None:
            i = after_restart = 0
            while after_restart < 10:
                text = f"m{i}"
                for _ in range(300):  # the same transaction id until main acknowledges it
                    status, body, headers = await alice.call(
                        "PUT",
                        f"{V3}/rooms/{room_id}/send/m.room.message/{text}",
                        {"msgtype": "m.text", "body": text},
                    )
                    if status == 200:
                        break
                    _check_clean_failure(status, body, headers, f"send {text}", problems)
                    refused["send"] += 1
                    await asyncio.sleep(0.2)  # client back-off (shorter than Retry-After: a test)
                else:
                    raise AssertionError(f"send {text} never succeeded: {problems[-3:]}")
                acked.append(text)
                if len(acked) == 5:
                    going.set()
                i += 1
                after_restart += restarted.is_set()
                await asyncio.sleep(0.05)
            done.set()

        async def sync_loop() -> list[str]:
            since, bodies = since0, []
            while not done.is_set():
                status, body, headers = await bob.call(
                    "GET", f"{V3}/sync", since=since, timeout="1000", filter=TIMELINE
                )
                if status != 200:
                    _check_clean_failure(status, body, headers, "sync", problems)
                    refused["sync"] += 1
                    await asyncio.sleep(0.2)
                    continue
                since = body["next_batch"]
                room = body.get("rooms", {}).get("join", {}).get(room_id, {})
                events = room.get("timeline", {}).get("events", [])
                bodies += [e["content"]["body"] for e in events if e["type"] == "m.room.message"]
            return bodies + await _bodies_since(bob, room_id, since, set(acked) - set(bodies))

        async def outage() -> None:
            await going.wait()
            await asyncio.to_thread(cluster.stop)
            try:
                # presence is answered from memory and written behind: it must reach the
                # database once it is back, with no further change to trigger a write
                status, body, _ = await alice.call(
                    "PUT", f"{V3}/presence/{alice_id}/status", {"presence": "online", "status_msg": "outage"}
                )
                assert status == 200, body
                # reads served by the readers that need the database fail cleanly too
                while refused["send"] < 10 or refused["read"] < 3:
                    status, body, headers = await bob.call(
                        "GET", f"{V3}/rooms/{room_id}/messages", dir="b", limit="5"
                    )
                    if status != 200:
                        _check_clean_failure(status, body, headers, "messages", problems)
                        refused["read"] += 1
                    status, body, headers = await bob.call("GET", f"{V3}/sync", filter=TIMELINE)
                    if status != 200:
                        _check_clean_failure(status, body, headers, "initial sync", problems)
                        refused["read"] += 1
                    await asyncio.sleep(0.1)
            finally:
                await asyncio.to_thread(cluster.start)
            restarted.set()

        sending = asyncio.create_task(send_loop())
        syncing = asyncio.create_task(sync_loop())
        await asyncio.wait_for(outage(), 120)
        await asyncio.wait_for(sending, 180)
        seen = await asyncio.wait_for(syncing, 180)

        assert not problems, problems
        assert refused["send"] >= 3
        # nothing acknowledged lost, nothing sent twice (retries reuse the transaction id)
        assert sorted(seen) == sorted(acked), (sorted(set(acked) - set(seen)), seen)
        # every reader recovered: each serves the whole conversation from before the outage on
        for reader in topology.readers:
            got = await _bodies_since(bob.at(reader.url), room_id, since0, set(acked))
            assert sorted(got) == sorted(acked), (reader.name, sorted(set(acked) - set(got)))
        for _ in range(100):  # the write-behind retries every second
            if await _presence_row(cluster, alice_id) == ("online", "outage"):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"presence not written: {await _presence_row(cluster, alice_id)}")
        # and nothing needed a restart
        assert topology.main.process.poll() is None
        for worker in topology.workers:
            assert worker.process.poll() is None, worker.name
            async with http.get(worker.url + "/health") as resp:
                assert resp.status == 200, worker.name

    topology.stop()
    logs: dict[str, Path] = {"main": topology.main.stderr_path}
    logs.update({w.name: w.stderr for w in topology.workers})
    for name, path in logs.items():
        text = path.read_text(errors="replace")
        assert "Traceback" not in text, f"{name}:\n{text[-6000:]}"
