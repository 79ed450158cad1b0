"""Benchmark: the fan-out and rooms scenarios of bench/load.py through a front door, one process
against main + 2 client_readers (+ pusher), ours and Synapse.

    python -m bench.workers_load [--servers ours,synapse] [--readers 0,2] [--scenarios fanout,rooms]
                                 [--quick] [--set fanout.receivers=50 ...] [--json-out FILE]

For every server, layout and scenario a fresh deployment of bench/deployments.py is started
(PostgreSQL; the worker layouts also a private redis-server), with nginx in front of it running
docker/nginx/matrix.conf (bench/frontdoor.py: /sync and the read-only API to the readers, sticky
per access token, everything else to main; with one process every route goes to it). The scenario
runs against the front door exactly as `python -m bench.load` would; every process (main, each
worker, nginx, the database's PostgreSQL backends) is read from /proc at the scenario's
measured-phase marks, so the table gives each one's share of a core. The background load (other
jobs on the machine, the deployment idle) is measured before each scenario. Prints one JSON line
per run and a Markdown table at the end. Not part of the test suite; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import deployments, frontdoor, scenarios
from bench.load import raise_fd_limit, run_scenario
from bench.procset import ProcessSetMonitor, background_load
from bench.stats import fmt_ms
from synapse_compat_tests.launcher import free_port

SCENARIOS = ("fanout", "rooms")


def parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    """`scenario.param=value` items into {scenario: {param: value}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        scenario, dot, param = key.partition(".")
        if not sep or not dot or not scenario or not param:
            raise SystemExit(f"--set expects SCENARIO.PARAM=VALUE, got {item!r}")
        out.setdefault(scenario, {})[param] = value
    return out


def scenario_params(name: str, quick: bool, sets: dict[str, str]) -> dict[str, Any]:
    sc = scenarios.get(name)
    params: dict[str, Any] = {p.name: (p.quick if quick else p.full) for p in sc.params}
    types = {p.name: p.type for p in sc.params}
    for key, value in sets.items():
        if key not in types:
            raise SystemExit(f"scenario {name} has no parameter {key!r} (has {', '.join(types)})")
        params[key] = types[key](value)
    return params


def run_one(server: str, readers: int, name: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-wl-{server}-{readers}-"))
    deployment = deployments.start(server, workdir, readers)
    door: frontdoor.FrontDoor | None = None
    try:
        door = frontdoor.start(
            workdir / "nginx",
            main=deployment.main_address,
            readers=deployment.reader_addresses,
            port=free_port(),
        )
        processes = deployment.processes | {"nginx": door.pid}
        monitor = ProcessSetMonitor(processes, deployment.db_name)
        background = background_load(2.0)
        print(
            f"--- {name} on {deployment.label} ({deployment.version}) via {door.url};"
            f" background {background['busy_cores']} cores busy, load average {background['loadavg_1m']}",
            file=sys.stderr,
            flush=True,
        )
        record = asyncio.run(
            run_scenario(
                scenarios.get(name),
                params,
                base_url=door.url,
                shared_secret=deployment.shared_secret,
                pid=processes["main"],
                timeout=timeout,
                db_name=deployment.db_name,
                monitor=monitor,
            )
        )
        record.update(
            deployment=deployment.label,
            server_kind=server,
            readers=readers,
            version=deployment.version,
            background=background,
            processes=monitor.per_process(),
            processes_rss_before_mb={
                k: v["rss_mb"]
                for k, v in monitor.per_process("before", "measure_start").items()
                if "rss_mb" in v
            },
        )
        return record
    finally:
        if door is not None:
            door.stop()
        deployment.stop()


def _cpu(record: dict[str, Any], names: list[str]) -> str:
    procs = record.get("processes") or {}
    parts = [f"{n} {procs[n]['cpu_percent']:.0f}" for n in names if n in procs]
    return ", ".join(parts) or "–"


def _rss(record: dict[str, Any]) -> str:
    procs = record.get("processes") or {}
    values = [v["rss_mb"] for k, v in procs.items() if "rss_mb" in v and k != "nginx"]
    return f"{sum(values):.0f}" if values else "–"


def server_cpu_s(record: dict[str, Any]) -> float | None:
    """CPU seconds the server's own processes (not nginx, not PostgreSQL) spent in the measured phase."""
    procs = record.get("processes") or {}
    wall = ((record.get("server_proc") or {}).get("measured") or {}).get("wall_s")
    if not wall:
        return None
    shares = [v["cpu_percent"] for k, v in procs.items() if k not in ("nginx", "postgres")]
    return round(sum(shares) * wall / 100, 2)


def table(records: list[dict[str, Any]]) -> str:
    """Markdown: one row per run; CPU in percent of one core over the measured phase."""
    lines = []
    fan = [r for r in records if r.get("scenario") == "fanout"]
    if fan:
        lines += [
            "| fanout | delay p50 | p95 | p99 | senders' msg/s | syncs | missing | server CPU (s) "
            "| CPU % of a core (measured phase) | RSS sum (MB) | background |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in fan:
            res = r.get("result") or {}
            lines.append(
                f"| {r['deployment']} | {fmt_ms(res.get('delay_p50_ms'))} "
                f"| {fmt_ms(res.get('delay_p95_ms'))} | {fmt_ms(res.get('delay_p99_ms'))} "
                f"| {res.get('msg_per_s', '–')} | {res.get('sync_requests', '–')} "
                f"| {res.get('missing', '–')} | {server_cpu_s(r)} "
                f"| {_cpu(r, list(r.get('processes') or {}))} | {_rss(r)} "
                f"| {r['background']['busy_cores']} |"
            )
    rooms = [r for r in records if r.get("scenario") == "rooms"]
    if rooms:
        lines += [
            "",
            "| rooms | incremental sync p50 | p99 | not immediate | long-poll wake p50 | p99 "
            "| CPU % of a core (measured phase) | RSS sum (MB) | background |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in rooms:
            res = r.get("result") or {}
            lines.append(
                f"| {r['deployment']} | {fmt_ms(res.get('incr_p50_ms'))} | {fmt_ms(res.get('incr_p99_ms'))} "
                f"| {res.get('incr_not_immediate', '–')} | {fmt_ms(res.get('wake_p50_ms'))} "
                f"| {fmt_ms(res.get('wake_p99_ms'))} | {_cpu(r, list(r.get('processes') or {}))} | {_rss(r)} "
                f"| {r['background']['busy_cores']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--servers", default="ours,synapse", help="comma-separated: ours, synapse")
    parser.add_argument("--readers", default="0,2", help="comma-separated reader counts (0: one process)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="the scenarios' --quick sizes")
    parser.add_argument("--set", action="append", default=[], metavar="SCENARIO.PARAM=VALUE")
    parser.add_argument("--timeout", type=float, default=1800.0, help="cap per scenario (s)")
    parser.add_argument("--json-out", help="also append every run's JSON line to this file")
    args = parser.parse_args(argv)
    sets = parse_sets(args.set)
    names = [n for n in args.scenarios.split(",") if n]
    for n in names:
        if n not in SCENARIOS:
            raise SystemExit(f"unknown scenario {n!r}: {', '.join(SCENARIOS)}")
    raise_fd_limit()
    records = []
    for name in names:
        params = scenario_params(name, args.quick, sets.get(name, {}))
        for server in [s for s in args.servers.split(",") if s]:
            for readers in [int(r) for r in args.readers.split(",") if r]:
                record = run_one(server, readers, name, params, args.timeout)
                records.append(record)
                line = json.dumps(record, separators=(",", ":"))
                print(line, flush=True)
                if args.json_out:
                    with contextlib.suppress(OSError), open(args.json_out, "a") as fh:
                        fh.write(line + "\n")
                sc = scenarios.get(name)
                summary = (
                    sc.summary(record["result"]) if record.get("ok") else [f"FAILED: {record.get('error')}"]
                )
                print("\n".join(f"   {ln}" for ln in summary), file=sys.stderr, flush=True)
    print(table(records), file=sys.stderr, flush=True)
    return 0 if all(r.get("ok") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
