"""/metrics after real traffic: Synapse-named families exist, carry their labels and move."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from homeserver.app import create_app_from_config
from homeserver.http.access_log import AccessLogger, redact_query
from homeserver.metrics import SERVER_REGISTRY, CallbackGauge

from ..conftest import make_config
from .helpers import auth, register

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: Any) -> Samples:
    resp = await client.get("/_synapse/metrics")
    assert resp.status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, /, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def has(samples: Samples, name: str, /, **labels: str) -> bool:
    want = set(labels.items())
    return any(n == name and want <= ls for (n, ls) in samples)


@pytest.fixture
async def metrics_client(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await aiohttp_client(create_app_from_config(make_config(tmp_path, enable_metrics=True)))


async def send(client: Any, token: str, room_id: str, txn: str) -> None:
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
        json={"msgtype": "m.text", "body": txn},
        headers=auth(token),
    )
    assert resp.status == 200, await resp.text()


async def test_families_move_with_traffic(metrics_client: Any) -> None:
    client = metrics_client
    before = await scrape(client)
    alice = await register(client, "alice")
    token = alice["access_token"]
    resp = await client.post("/_matrix/client/v3/createRoom", json={}, headers=auth(token))
    room_id = (await resp.json())["room_id"]
    for i in range(3):
        await send(client, token, room_id, f"m{i}")
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(token))
    since = (await resp.json())["next_batch"]

    # A parked incremental sync, woken by a new message.
    parked = asyncio.ensure_future(
        client.get(f"/_matrix/client/v3/sync?since={since}&timeout=60000", headers=auth(token))
    )
    while True:  # wait until the sync is parked in the notifier (no sleep-based timing)
        during = await scrape(client)
        if value(during, "synapse_notifier_listeners") >= 1:
            break
        await asyncio.sleep(0)
    assert value(during, "synapse_http_server_in_flight_requests_count", servlet="sync", method="GET") == 1
    await send(client, token, room_id, "wake")
    resp = await parked
    assert resp.status == 200
    assert (await client.get("/_matrix/client/v3/no/such/endpoint")).status == 404
    after = await scrape(client)

    def delta(name: str, /, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # HTTP: counts per servlet (the operationId), latency histograms with method/servlet/tag/code.
    assert delta("synapse_http_server_requests_received_total", method="PUT", servlet="sendMessage") == 4
    assert delta("synapse_http_server_responses_total", method="PUT", code="200") == 4
    send_labels = {"method": "PUT", "servlet": "sendMessage", "tag": "", "code": "200"}
    assert delta("synapse_http_server_response_time_seconds_count", **send_labels) == 4
    assert delta("synapse_http_server_response_time_seconds_bucket", le="+Inf", **send_labels) == 4
    assert delta("synapse_http_server_response_time_seconds_sum", **send_labels) > 0
    assert delta("synapse_http_server_response_count_total", servlet="sync", tag="initial_sync") == 1
    assert delta("synapse_http_server_response_count_total", servlet="sync", tag="incremental_sync") == 1
    assert delta("synapse_http_server_response_time_seconds_count", servlet="unrecognised", code="404") == 1
    assert delta("synapse_http_server_response_db_txn_count_total", servlet="sendMessage") > 0
    assert delta("synapse_http_server_response_size_total", servlet="sync") > 0
    assert delta("synapse_http_server_in_flight_requests_db_txn_count_total", servlet="createRoom") > 0
    assert value(after, "synapse_http_server_in_flight_requests_count", servlet="sync") == 0

    # Event persistence and the notifier.
    assert delta("synapse_storage_events_persisted_events_total") >= 4 + 5  # createRoom writes several
    assert (
        delta("synapse_storage_events_persisted_events_sep_total", type="m.room.message", origin_type="local")
        == 4
    )
    assert value(after, "synapse_event_persisted_position") >= 9
    assert delta("synapse_storage_events_forward_extremities_persisted_count") >= 4
    assert delta("homeserver_persist_event_seconds_count") >= 5
    assert value(after, "homeserver_persist_queue_length") == 0  # everything acknowledged is committed
    assert has(after, "homeserver_presence_pending_writes")
    assert delta("synapse_notifier_notified_events_total") >= 4
    assert delta("synapse_notifier_users_woken_by_stream_total", stream="events") >= 1
    assert delta("homeserver_sync_wakeup_seconds_count") >= 1

    # Database: transactions by name, the wait for a connection, statements by verb.
    assert delta("synapse_storage_transaction_time_count_total") > 0
    assert delta("synapse_storage_transaction_time_sum_total") > 0
    assert has(after, "synapse_storage_transaction_time_count_total", desc="_write")
    assert delta("synapse_storage_schedule_time_count") > 0
    assert delta("synapse_storage_query_time_count", verb="insert") > 0
    assert has(after, "homeserver_db_pool_connections", state="idle")

    # Caches: lookups and hits move, sizes reflect the entries.
    # createRoom, 4 sends, 2 syncs: the first lookup of the new token misses, the others hit.
    assert delta("synapse_util_caches_cache", name="get_user_by_access_token") == 7
    assert delta("synapse_util_caches_cache_hits", name="get_user_by_access_token") == 6
    assert value(after, "synapse_util_caches_cache_size", name="get_user_by_access_token") >= 1
    assert delta("synapse_util_caches_cache", name="*getEvent*") > 0
    assert value(after, "synapse_util_caches_cache_size", name="current_state_snapshot") >= 1
    assert has(after, "synapse_util_caches_cache_evicted_size", name="*getEvent*", reason="size")

    # Measured blocks, background jobs, accounts, presence.
    assert delta("synapse_util_metrics_block_count_total", block_name="compute_sync") >= 3
    assert delta("synapse_util_metrics_block_count_total", block_name="encode_json_response") > 0
    assert has(after, "synapse_util_metrics_block_ru_utime_seconds_total", block_name="encode_json_response")
    assert delta("synapse_user_registrations_total") == 1
    assert delta("synapse_handlers_sync_nonempty_total", type="initial_sync", lazy_loaded="False") == 1
    assert delta("synapse_handlers_sync_nonempty_total", type="incremental_sync") == 1
    assert (
        delta("synapse_handler_presence_state_transition_total", **{"from": "offline", "to": "online"}) >= 1
    )

    # Process families and the server_name join.
    for name in ("process_cpu_user_seconds_total", "process_resident_memory_bytes", "python_gc_counts"):
        assert has(after, name), name
    assert has(after, "synapse_build_info")
    assert value(after, "synapse_server_name_info", server_name="test.local") == 1
    # Every homeserver family carries server_name (Synapse's dashboard filters on it).
    for (name, labels), _ in after.items():
        if name.startswith(("synapse_", "homeserver_")) and name != "synapse_build_info":
            assert ("server_name", "test.local") in labels, name


async def test_access_log_line(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, caplog: Any) -> None:
    # aiohttp checks whether the access log is enabled when a connection opens: set the level first.
    caplog.set_level(logging.INFO, logger="homeserver.access")
    app = create_app_from_config(make_config(tmp_path))
    access_logger = logging.getLogger("homeserver.access.http.test")
    server = await aiohttp_server(app, access_log_class=AccessLogger, access_log=access_logger)
    client = await aiohttp_client(server)
    alice = await register(client, "bob")
    token = alice["access_token"]
    caplog.clear()
    resp = await client.get(
        f"/_matrix/client/v3/sync?timeout=0&access_token={token}", headers={"User-Agent": "TestAgent/1.0"}
    )
    assert resp.status == 200
    await resp.read()
    records = [r for r in caplog.records if r.name == "homeserver.access.http.test"]
    assert len(records) == 1
    line = records[0].getMessage()
    assert token not in line
    pattern = (
        r"^127\.0\.0\.1 - \d+ - \{@bob:test\.local\} Processed request: \d+\.\d{3}sec/-?\d+\.\d{3}sec "
        r"ru=\(-, -\) db=\(\d+\.\d{3}sec/\d+\.\d{3}sec/(\d+)\) (\d+)B 200 "
        r'"GET /_matrix/client/v3/sync\?timeout=0&access_token=<redacted> HTTP/1\.1" "TestAgent/1\.0" '
        r"\[\d+ dbevts\]$"
    )
    match = re.match(pattern, line)
    assert match, line
    assert int(match.group(1)) > 0  # the sync read the database
    assert int(match.group(2)) > 0
    assert re.fullmatch(r"GET-[0-9a-f]{8}", records[0].request_id)

    caplog.clear()
    assert (await client.get("/_matrix/client/v3/account/whoami")).status == 401
    line = next(r for r in caplog.records if r.name == "homeserver.access.http.test").getMessage()
    assert "{None}" in line and " 401 " in line


@pytest.mark.parametrize(
    ("raw", "redacted"),
    [
        ("/a", "/a"),
        ("/a?access_token=abc", "/a?access_token=<redacted>"),
        ("/a?x=1&access%5Ftoken=abc&y=2", "/a?x=1&access%5Ftoken=<redacted>&y=2"),
        ("/a?client_secret=s&sid=1", "/a?client_secret=<redacted>&sid=1"),
        (
            "/v1/register/m.login.registration_token/validity?token=t",
            "/v1/register/m.login.registration_token/validity?token=<redacted>",
        ),
        ("/a?since=s1_2&timeout=30000", "/a?since=s1_2&timeout=30000"),
    ],
)
def test_redact_query(raw: str, redacted: str) -> None:
    assert redact_query(raw) == redacted


async def test_metrics_not_served_unless_enabled(client: Any) -> None:
    assert (await client.get("/_synapse/metrics")).status == 404


async def test_rate_limit_rejections_outbound_requests_and_jobs(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="<html><head><title>Hello</title></head></html>", content_type="text/html")

    site = web.Application()
    site.router.add_get("/page", page)
    remote = await aiohttp_server(site)
    config = make_config(
        tmp_path,
        enable_metrics=True,
        url_preview_enabled=True,
        url_preview_ip_range_whitelist=["127.0.0.1"],
        rc_message={"per_second": 0.001, "burst_count": 1},
    )
    client = await aiohttp_client(create_app_from_config(config))
    before = await scrape(client)
    token = (await register(client))["access_token"]
    resp = await client.post("/_matrix/client/v3/createRoom", json={}, headers=auth(token))
    room_id = (await resp.json())["room_id"]
    await send(client, token, room_id, "one")
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/two",
        json={"msgtype": "m.text", "body": "two"},
        headers=auth(token),
    )
    assert resp.status == 429
    url = f"http://127.0.0.1:{remote.port}/page"
    resp = await client.get("/_matrix/client/v1/media/preview_url", params={"url": url}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    after = await scrape(client)

    def delta(name: str, /, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("synapse_rate_limit_reject_total", rate_limiter_name="message") == 1
    assert delta("synapse_http_server_responses_total", method="PUT", code="429") == 1
    assert delta("synapse_http_client_requests_total", method="GET") == 1
    assert delta("synapse_http_client_responses_total", method="GET", code="200") == 1
    assert delta("synapse_background_process_start_count_total", name="url_preview") == 1
    assert value(after, "synapse_background_process_in_flight_count", name="url_preview") == 0
    assert delta("synapse_handlers_sync_nonempty_total") == 0  # no sync in this test


async def test_a_failing_gauge_does_not_break_the_scrape(metrics_client: Any) -> None:
    class Owner:
        pass

    def broken(_owner: Owner) -> float:
        raise RuntimeError("reader broke")

    owner = Owner()
    gauge = CallbackGauge("homeserver_test_broken", "test gauge")
    gauge.bind(owner, broken)
    try:
        samples = await scrape(metrics_client)
    finally:
        SERVER_REGISTRY.unregister(gauge)
    assert not has(samples, "homeserver_test_broken")
    assert has(samples, "synapse_server_name_info")
