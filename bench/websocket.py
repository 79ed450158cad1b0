"""WebSocket sync against long-polling on one freshly started server of ours:

    python -m bench.websocket [--receivers 50] [--idle 1000] [--only fanout|idle] [--json-out FILE]

Starts a fresh homeserver (SQLite, open rate limits) on a free loopback port for each of these
`bench.load` scenarios: `fanout` (R receivers long-polling /sync) and `ws_fanout` (the same on
WebSockets) with identical parameters, then `idle` and `ws_idle` with the same number of clients,
each sampling the server's RSS and CPU through /proc. Prints one table; the JSON lines go to --json-out.
Figures are in docs/performance.md ("WebSocket sync").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from synapse_compat_tests.launcher import launch

OPEN = {"per_second": 100000, "burst_count": 1000000}


def run_scenario(server: Any, name: str, params: dict[str, Any], json_out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "bench.load",
        "--base-url",
        server.base_url,
        "--shared-secret",
        server.shared_secret,
        "--pid",
        str(server.process.pid),
        "--json-out",
        str(json_out),
        "--label",
        "ours",
        "--db",
        "sqlite",
        name,
    ]
    for key, value in params.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receivers", type=int, default=50)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--idle", type=int, default=1000, help="idle clients (long-polls, then WebSockets)")
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--json-out", default="bench-websocket.jsonl")
    parser.add_argument(
        "--only", choices=("fanout", "idle"), help="run only the fan-out pair or only the idle pair"
    )
    args = parser.parse_args()
    json_out = Path(args.json_out)
    rows: list[tuple[str, Any, Any]] = []
    overrides = {
        "rc_message": OPEN,
        "rc_registration": OPEN,
        "rc_login": {"address": OPEN, "account": OPEN, "failed_attempts": OPEN},
        "presence": {"enabled": False},
    }

    def fresh(name: str, params: dict[str, Any]) -> dict[str, Any]:
        # A fresh server per scenario: RSS growth is not hidden by memory an earlier one freed.
        with tempfile.TemporaryDirectory() as tmp:
            server = launch("sqlite", Path(tmp) / "hs", overrides=overrides)
            try:
                return run_scenario(server, name, params, json_out)
            finally:
                server.stop()

    if args.only != "idle":
        fanout_rows(args, fresh, rows)
    if args.only != "fanout":
        idle_rows(args, fresh, rows)
    print(f"{'measure':48} {'long-poll':>12} {'websocket':>12}")
    for name, a, b in rows:
        print(f"{name:48} {a!s:>12} {b!s:>12}")


def background(res: dict[str, Any]) -> float | None:
    """Cores busy with other work during the measured phase (machine minus server and client)."""
    m = (res.get("server_proc") or {}).get("measured") or {}
    if not m.get("wall_s") or m.get("machine_busy_cpu_s") is None:
        return None
    other = m["machine_busy_cpu_s"] - (m.get("server_cpu_s") or 0) - (m.get("client_cpu_s") or 0)
    return round(max(0.0, other) / m["wall_s"], 2)


def fanout_rows(args: Any, fresh: Any, rows: list[tuple[str, Any, Any]]) -> None:
    fan = {"receivers": args.receivers, "senders": args.senders, "messages": args.messages}
    lp = fresh("fanout", fan)
    ws = fresh("ws_fanout", fan)
    for key in ("delay_p50_ms", "delay_p99_ms", "delivered_per_s", "missing", "duplicates"):
        rows.append((f"fan-out R={args.receivers}: {key}", lp["result"].get(key), ws["result"].get(key)))
    cpu_rows = []
    for res in (lp, ws):
        cpu = ((res.get("server_proc") or {}).get("measured") or {}).get("server_cpu_s")
        delivered = res["result"].get("delivered") or 0
        cpu_rows.append(round(cpu * 1000 / delivered, 3) if cpu and delivered else None)
    rows.append(("fan-out: server CPU ms per delivery", cpu_rows[0], cpu_rows[1]))
    rows.append(("fan-out: background load (cores)", background(lp), background(ws)))


def idle_rows(args: Any, fresh: Any, rows: list[tuple[str, Any, Any]]) -> None:
    idle = fresh("idle", {"polls": args.idle, "hold_s": args.hold})
    ws_idle = fresh("ws_idle", {"connections": args.idle, "hold_s": args.hold})
    rows.append(
        (
            f"idle x{args.idle}: RSS per client KiB",
            idle["result"].get("rss_per_poll_kib"),
            ws_idle["result"].get("rss_per_connection_kib"),
        )
    )
    rows.append(
        (
            f"idle x{args.idle}: server CPU s over {args.hold:g} s",
            idle["result"].get("server_cpu_s_during"),
            ws_idle["result"].get("server_cpu_s_during"),
        )
    )
    rows.append(("idle: errors", idle["result"].get("errors"), ws_idle["result"].get("errors")))
    rows.append(("idle: background load (cores)", background(idle), background(ws_idle)))


if __name__ == "__main__":
    main()
