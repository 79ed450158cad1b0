"""Server memory per idle client, long-poll against WebSocket, by tracemalloc (Python heap):

    python -m bench.ws_memory [--clients 100] [--top 12]

Runs our homeserver in this process (SQLite in a temporary directory, presence off) with
tracemalloc on, and the clients in a child process, so every traced allocation is the server's.
The child registers N users and gives each an initial sync; then, against the same warm server,
N idle WebSockets (`Authorization` header, first sync frame read) are held open, and after they
are closed N idle long-polls (`GET /sync?since=...&timeout=300000`). Each figure is the growth of
traced memory (after `gc.collect()`) from before the clients connected to when all N are parked
in the notifier, divided by N (zlib's state is traced too: Python's zlib allocates through it).
`--deflate` makes the WebSocket clients offer permessage-deflate, as browsers do. `--top` lists the
allocation sites that grew most (`--frames` deep). RSS is not used: in one process it depends on
which phase first grew the heap. The figures are in
docs/performance.md ("WebSocket sync"); RSS per client of a fresh server process is `bench.load`'s
`idle` and `ws_idle` scenarios (`python -m bench.websocket`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

OPEN = {"per_second": 100000, "burst_count": 1000000}
V3 = "/_matrix/client/v3"


# -- the client side (child process) ----------------------------------------------------------


async def _clients(base: str, count: int, deflate: bool) -> None:
    """Register `count` users, then obey the parent's commands on stdin: `longpoll`, `websocket`,
    `close`, `exit`. Prints one line per finished step."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        users: list[tuple[str, str]] = []
        for i in range(count):
            async with http.post(
                f"{base}{V3}/register",
                json={"username": f"idle{i}", "password": "p4ssw0rd-idle", "auth": {"type": "m.login.dummy"}},
            ) as resp:
                token = (await resp.json())["access_token"]
            async with http.get(
                f"{base}{V3}/sync", params={"timeout": "0"}, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                users.append((token, (await resp.json())["next_batch"]))
        print("registered", flush=True)
        held: list[Any] = []
        while line := (await reader.readline()).decode().strip():
            if line == "longpoll":
                held = [asyncio.ensure_future(_long_poll(http, base, t, s)) for t, s in users]
            elif line == "websocket":
                held = list(await asyncio.gather(*(_websocket(http, base, t, s, deflate) for t, s in users)))
            elif line == "close":
                for item in held:
                    if isinstance(item, asyncio.Future):
                        item.cancel()
                    else:
                        await item.close()
                await asyncio.gather(
                    *(h for h in held if isinstance(h, asyncio.Future)), return_exceptions=True
                )
                held = []
                # Drop the pooled keep-alive connections too: the next phase starts from none.
                await connector.close()
                connector = aiohttp.TCPConnector(limit=0)
                http._connector = connector
            elif line == "exit":
                break
            print(f"done {line}", flush=True)


async def _long_poll(http: aiohttp.ClientSession, base: str, token: str, since: str) -> None:
    params = {"since": since, "timeout": "300000"}
    async with http.get(f"{base}{V3}/sync", params=params, headers={"Authorization": f"Bearer {token}"}) as r:
        await r.read()


async def _websocket(http: aiohttp.ClientSession, base: str, token: str, since: str, deflate: bool) -> Any:
    ws = await http.ws_connect(
        f"{base}/_matrix/client/unstable/org.homeserver.ws/sync",
        params={"since": since},
        headers={"Authorization": f"Bearer {token}"},
        heartbeat=None,
        compress=15 if deflate else 0,  # browsers offer permessage-deflate
    )
    for _ in range(2):  # ready, then the first sync frame
        await ws.receive_json()
    return ws


# -- the server side (this process) -----------------------------------------------------------


def _config(tmp: Path) -> Any:
    from homeserver.config import build_config

    return build_config(
        {
            "server_name": "bench.local",
            "data_dir": str(tmp),
            "database": {"name": "sqlite3", "args": {"database": str(tmp / "hs.db")}},
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "bcrypt_rounds": 4,
            "presence": {"enabled": False},
            "rc_login": {"address": OPEN, "account": OPEN, "failed_attempts": OPEN},
            "rc_registration": OPEN,
            "rc_message": OPEN,
        }
    )


async def _until(check: Any, what: str, timeout_s: float = 120.0) -> None:
    for _ in range(int(timeout_s * 20)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _traced() -> tuple[int, tracemalloc.Snapshot]:
    gc.collect()
    return tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()


async def _server(count: int, top: int, frames: int, deflate: bool) -> dict[str, Any]:
    from homeserver.app import SERVICES, create_app_from_config

    tracemalloc.start(frames)
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app_from_config(_config(Path(tmp)))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        services = app[SERVICES]
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.ws_memory",
            "--client-of",
            f"http://127.0.0.1:{port}",
            "--clients",
            str(count),
            *(["--deflate"] if deflate else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None

        async def command(line: str) -> None:
            child.stdin.write(f"{line}\n".encode())  # type: ignore[union-attr]
            await child.stdin.drain()  # type: ignore[union-attr]
            assert (await child.stdout.readline()).decode().strip() == f"done {line}"  # type: ignore[union-attr]

        try:
            assert (await child.stdout.readline()).decode().strip() == "registered"
            notifier = services.notifier
            results: dict[str, Any] = {"clients": count}
            # WebSockets first: their server side ends when the client closes, while a parked
            # long-poll whose client went away stays parked until its timeout.
            for mode in ("websocket", "longpoll"):
                await asyncio.sleep(1.0)
                before, snap_before = _traced()
                await command(mode)
                await _until(lambda: notifier.listeners >= count, f"{count} parked {mode} clients")
                if mode == "websocket":
                    await _until(lambda: services.live_sync.count >= count, f"{count} WebSockets")
                await asyncio.sleep(1.0)
                after, snap_after = _traced()
                results[f"{mode}_bytes_per_client"] = round((after - before) / count)
                group = "traceback" if frames > 1 else "lineno"
                sites = snap_after.compare_to(snap_before, group)[:top]
                results[f"{mode}_top"] = [
                    f"{s.size_diff / count:8.0f} B {s.count_diff / count:5.1f} blocks/client  "
                    + " <- ".join(
                        f"{f.filename.split('site-packages/')[-1].split('/work/wt/ws/')[-1]}:{f.lineno}"
                        for f in reversed(s.traceback)
                    )
                    for s in sites
                ]
                if mode == "websocket":
                    await command("close")
                    await _until(lambda: notifier.listeners == 0, "the WebSockets to close")
            child.stdin.write(b"exit\n")
            await child.stdin.drain()
            notifier.close()  # answers the parked long-polls: a quick shutdown
            await child.wait()
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
            await runner.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--top", type=int, default=12, help="allocation sites to list per mode")
    parser.add_argument("--frames", type=int, default=1, help="traceback depth of the listed sites")
    parser.add_argument("--deflate", action="store_true", help="WebSocket clients offer permessage-deflate")
    parser.add_argument("--client-of", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.client_of:
        asyncio.run(_clients(args.client_of, args.clients, args.deflate))
        return
    load = os.getloadavg()[0]
    results = asyncio.run(_server(args.clients, args.top, args.frames, args.deflate))
    results["loadavg_1m_before"] = load
    for mode in ("longpoll", "websocket"):
        kib = results[f"{mode}_bytes_per_client"] / 1024
        offered = ", permessage-deflate offered" if args.deflate and mode == "websocket" else ""
        label = f"traced Python heap, {args.clients} clients{offered}"
        print(f"{mode:10} {kib:6.1f} KiB per idle client ({label})")
        for line in results[f"{mode}_top"]:
            print(f"    {line}")
    print(json.dumps({k: v for k, v in results.items() if not k.endswith("_top")}))


if __name__ == "__main__":
    main()
