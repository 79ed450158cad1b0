"""SIGTERM with long-polling /syncs open: they are answered at once and the process exits.

Docker gives a container 10 s between SIGTERM and SIGKILL; parked syncs must not hold the
shutdown for their whole timeout. The exit time is printed (run with -s to see it) and only
checked against a generous bound, well under Docker's grace but far above the expected figure.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from synapse_compat_tests.client import MatrixClient, q, register_user
from synapse_compat_tests.launcher import launch

SYNCS = 12
SYNC_TIMEOUT_MS = 60_000
EXIT_BOUND_S = 8.0


def _wait_until_syncing(client: MatrixClient, user_id: str) -> None:
    """A /sync (with the default set_presence) marks its user online when it starts: once that
    shows, the client's long-poll loop is running inside the server."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body, _ = client.get(f"/_matrix/client/v3/presence/{q(user_id)}/status")
        if status == 200 and body.get("presence") == "online":
            return
        time.sleep(0.05)  # readiness poll on server state
    raise AssertionError(f"the long-poll of {user_id} never started")


def _poll_forever(client: MatrixClient, since: str, log: list[tuple[float, Any]]) -> None:
    """A client's sync loop: long-poll, take next_batch, again; ends when the server is gone.

    Its first poll returns early (the user's own presence went online); later ones park until
    the timeout, so at SIGTERM the server holds parked syncs.
    """
    while True:
        try:
            response = client.get(
                "/_matrix/client/v3/sync", params={"since": since, "timeout": str(SYNC_TIMEOUT_MS)}
            )
        except OSError as exc:  # connection refused/reset: the server has stopped
            log.append((time.monotonic(), exc))
            return
        log.append((time.monotonic(), response))
        if response.status != 200:
            return
        since = response.body["next_batch"]


def test_sigterm_answers_waiting_syncs_and_exits(tmp_path: Path) -> None:
    server = launch("sqlite", tmp_path)
    logs: list[list[tuple[float, Any]]] = [[] for _ in range(SYNCS)]
    threads: list[threading.Thread] = []
    try:
        clients: list[tuple[str, MatrixClient, str]] = []
        for i in range(SYNCS):
            user_id, token, _ = register_user(
                MatrixClient(server.base_url), server.shared_secret, f"poller{i}"
            )
            client = MatrixClient(server.base_url, token, timeout=90.0)
            status, body, _ = client.get("/_matrix/client/v3/sync", params={"set_presence": "offline"})
            assert status == 200, body
            clients.append((user_id, client, body["next_batch"]))
        for index, (_, client, since) in enumerate(clients):
            thread = threading.Thread(target=_poll_forever, args=(client, since, logs[index]), daemon=True)
            thread.start()
            threads.append(thread)
        for user_id, client, _ in clients:
            _wait_until_syncing(client, user_id)

        sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=30)
        elapsed = time.monotonic() - sigterm_at
        print(f"\nexit {elapsed:.2f}s after SIGTERM with {SYNCS} long-polling clients")
        assert code == 0, server.stderr_path.read_text()[-3000:]
        assert elapsed < EXIT_BOUND_S, f"took {elapsed:.1f}s to stop"
        for thread in threads:
            thread.join(timeout=30)
        answered_at_shutdown = 0
        for log in logs:
            *responses, (_, last) = log
            assert isinstance(last, OSError), f"the sync loop should end when the server is gone: {last}"
            for at, response in responses:
                assert response.status == 200, response.describe()
                answered_at_shutdown += at >= sigterm_at
        # Parked syncs were answered by the shutdown itself, not cut off.
        assert answered_at_shutdown > 0
    finally:
        server.stop()


def test_sigterm_closes_websocket_syncs_with_going_away(tmp_path: Path) -> None:
    """Open WebSocket syncs (docs/websocket.md) are closed with 1001 and the process exits."""
    import asyncio
    import json

    import aiohttp

    server = launch("sqlite", tmp_path)
    try:
        client = MatrixClient(server.base_url)
        tokens = [register_user(client, server.shared_secret, f"ws{i}")[1] for i in range(5)]

        async def run() -> tuple[list[int | None], float]:
            async with aiohttp.ClientSession() as session:
                sockets = []
                for token in tokens:
                    ws = await session.ws_connect(
                        f"{server.base_url}/_matrix/client/v3/sync",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert json.loads((await ws.receive(timeout=30)).data)["type"] == "ready"
                    assert json.loads((await ws.receive(timeout=30)).data)["type"] == "sync"
                    sockets.append(ws)
                started = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                codes = []
                for ws in sockets:
                    msg = await ws.receive(timeout=EXIT_BOUND_S)
                    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
                    codes.append(ws.close_code)
                    await ws.close()
                await asyncio.to_thread(server.process.wait, EXIT_BOUND_S)
                return codes, time.monotonic() - started

        codes, took = asyncio.run(run())
        print(f"SIGTERM with 5 WebSocket syncs: exited after {took:.2f} s")
        assert codes == [1001] * 5
        assert server.process.returncode == 0
        assert took < EXIT_BOUND_S
    finally:
        server.stop()
