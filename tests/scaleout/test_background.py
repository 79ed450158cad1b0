"""`run_background_tasks_on: bg1`: the background worker runs the retention purges, main does not.

A room with a 1 s `m.room.retention` max_lifetime: its old messages are purged by the job the
background worker schedules and runs; main's and a reader's event caches (warmed by reading the
events first) drop them too, through the replication API and the `events_purged` announcement.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import pytest

from synapse_compat_tests.client import MatrixClient, q, register_user
from tests.scaleout.topology import Topology, start_topology

V3 = "/_matrix/client/v3"
EVICTED = re.compile(r"^synapse_util_caches_cache_evicted_size\{([^}]*)\} (\S+)$", re.M)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topo = start_topology(
        tmp_path_factory.mktemp("background"),
        readers=1,
        pusher=False,
        overrides={
            "run_background_tasks_on": "bg1",
            "enable_metrics": True,
            "retention": {
                "enabled": True,
                "allowed_lifetime_min": "1s",
                "purge_jobs": [{"interval": "1s"}],
            },
        },
    )
    try:
        topo.start_worker("background", "bg1")
        yield topo
    finally:
        topo.stop()


def _events_invalidated(base_url: str) -> float:
    """How many entries this process's event cache dropped as stale (its own metric)."""
    with urllib.request.urlopen(base_url + "/_synapse/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for labels, value in EVICTED.findall(text):
        if 'name="*getEvent*"' in labels and 'reason="invalidation"' in labels:
            return float(value)
    raise AssertionError("no event cache metric")


def _event_status(client: MatrixClient, room_id: str, event_id: str) -> int:
    return client.get(f"{V3}/rooms/{q(room_id)}/event/{q(event_id)}").status


def test_retention_purges_run_on_the_background_worker(topology: Topology) -> None:
    main = topology.main
    _, token, _ = register_user(MatrixClient(main.base_url), main.shared_secret)
    alice = MatrixClient(main.base_url, token)
    reader = MatrixClient(topology.readers[0].url, token)
    resp = alice.post(f"{V3}/createRoom", {"preset": "private_chat"})
    assert resp.status == 200, resp.describe()
    room_id = resp.body["room_id"]
    resp = alice.put(f"{V3}/rooms/{q(room_id)}/state/m.room.retention/", {"max_lifetime": 1000})
    assert resp.status == 200, resp.describe()
    old = []
    for i in range(3):
        resp = alice.put(
            f"{V3}/rooms/{q(room_id)}/send/m.room.message/old{i}", {"msgtype": "m.text", "body": f"old{i}"}
        )
        assert resp.status == 200, resp.describe()
        old.append(resp.body["event_id"])
    # the newest event of a room is never purged: one more, later
    for event_id in old:  # both processes now hold the old events in their event caches
        for client in (alice, reader):
            for _ in range(50):  # the reader may not have the event yet
                if _event_status(client, room_id, event_id) == 200:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"{event_id} never readable")
    time.sleep(1.1)  # let them expire (max_lifetime 1 s)
    resp = alice.put(f"{V3}/rooms/{q(room_id)}/send/m.room.message/new", {"msgtype": "m.text", "body": "new"})
    assert resp.status == 200, resp.describe()

    # (expired events are hidden at once; the purge deletes them, and every process's event
    # cache must drop them: main's through the replication API, the reader's announced by main)
    processes = (main.base_url, topology.readers[0].url)
    before = [_events_invalidated(url) for url in processes]
    deadline = time.monotonic() + 60
    while any(_events_invalidated(url) < n + len(old) for url, n in zip(processes, before, strict=True)):
        assert time.monotonic() < deadline, "the purged events stayed in an event cache"
        time.sleep(0.2)  # poll: the purge job runs every second on the worker
    for client in (alice, reader):
        assert all(_event_status(client, room_id, e) == 404 for e in old)

    background = next(w for w in topology.workers if w.name == "bg1")
    assert "retention_purge job" in background.stderr.read_text()
    assert "retention_purge job" not in main.stderr_path.read_text()
    for path in (background.stderr, main.stderr_path, topology.readers[0].stderr):
        text = path.read_text()
        assert "Traceback" not in text, text[-4000:]
