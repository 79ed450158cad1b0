"""Load tool for Matrix homeservers: speaks only the client-server API to a loopback base URL.

    python -m bench.load --base-url http://127.0.0.1:8008 --shared-secret S --pid PID [--quick] \
        SCENARIO [--param value ...]

Users are created through Synapse's shared-secret admin registration (`/_synapse/admin/v1/register`),
so the same run works against our server and against Synapse. Each scenario prints exactly one JSON
line on stdout (also appended to --json-out when given) and a human summary on stderr. With --pid the
server's RSS and CPU (user+system, the process and its children, from /proc) are sampled before and
after the scenario and over its measured phase.

Scenarios: send, fanout, rooms, initial_sync, history, join, idle (`SCENARIO --help` for parameters).
Every loop is bounded in count and time; --timeout caps the whole scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
import traceback
from typing import Any

from bench import scenarios
from bench.client import Client, check_loopback, run_tag
from bench.procstat import Monitor, Profiler
from bench.scenarios.base import Context, Scenario


def raise_fd_limit(want: int | None = None) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if want is None or hard == resource.RLIM_INFINITY else min(hard, want)
    if hard == resource.RLIM_INFINITY:
        target = want or 1_048_576
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine_info() -> dict[str, Any]:
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "mem_gib": round(mem_kib / 1048576, 1),
        "cpu": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--base-url", required=True, help="loopback base URL of the homeserver")
    parser.add_argument("--shared-secret", required=True, help="registration_shared_secret of the server")
    parser.add_argument("--pid", type=int, help="server pid to sample (RSS, CPU) through /proc")
    parser.add_argument(
        "--db-name", help="PostgreSQL database of the server: its backends' CPU is sampled too (db_cpu_s)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--timeout", type=float, default=3600.0, help="cap for the whole scenario (s)")
    parser.add_argument("--json-out", help="also append the JSON line to this file")
    parser.add_argument("--label", default="", help="free label recorded in the JSON (e.g. ours, synapse)")
    parser.add_argument("--db", default="", help="database kind, recorded in the JSON only")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--profile", metavar="FILE", help="py-spy the server (--pid) over the measured phase into FILE (raw)"
    )
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for sc in scenarios.all_scenarios():
        p = sub.add_parser(sc.name, help=sc.help, description=sc.help)
        for prm in sc.params:
            p.add_argument(
                f"--{prm.name.replace('_', '-')}",
                dest=prm.name,
                type=prm.type,
                default=None,
                help=f"{prm.help} (default {prm.full}, --quick {prm.quick})",
            )
    return parser


def resolve_params(sc: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for prm in sc.params:
        value = getattr(args, prm.name, None)
        out[prm.name] = value if value is not None else (prm.quick if args.quick else prm.full)
    return out


async def run_scenario(
    sc: Scenario,
    params: dict[str, Any],
    *,
    base_url: str,
    shared_secret: str,
    pid: int | None,
    timeout: float,  # noqa: ASYNC109 - the scenario's time cap
    verbose: bool = True,
    profile_out: str | None = None,
    db_name: str | None = None,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    """Run one scenario; `monitor` replaces the default one on `pid` (e.g. one that also samples
    every process of a worker deployment at the scenario's marks)."""
    check_loopback(base_url)
    tag = run_tag()
    monitor = monitor or Monitor(pid, db_name=db_name)
    record: dict[str, Any] = {
        "scenario": sc.name,
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_url": base_url,
        "tag": tag,
        "params": params,
        "machine": machine_info(),
    }
    started = time.monotonic()
    async with Client(base_url, shared_secret) as client:
        profiler = Profiler(pid, profile_out) if (pid and profile_out) else None
        ctx = Context(client=client, monitor=monitor, tag=tag, verbose=verbose, profiler=profiler)
        record["server"] = await client.server_version()
        client.statuses.clear()  # the version probes may 404 on a client-only listener
        client.errors.clear()
        client.requests = 0
        ctx.mark("before")
        monitor.start()
        try:
            result = await asyncio.wait_for(sc.run(ctx, params), timeout)
            record["ok"] = True
            record["result"] = result
        except Exception as exc:
            record["ok"] = False
            record["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if verbose:
                traceback.print_exc(file=sys.stderr)
        finally:
            if profiler is not None:
                profiler.stop()  # when the scenario failed inside its measured phase
                record["profile"] = {"file": profile_out, "error": profiler.error}
            ctx.mark("after")
            await monitor.stop()
        record["server_proc"] = {
            "pid": pid,
            "before": monitor.marks["before"].to_json() if "before" in monitor.marks else None,
            "after": monitor.marks["after"].to_json() if "after" in monitor.marks else None,
            "measured": ctx.measured(),
            "whole": ctx.measured("before", "after"),
        }
        record["client"] = {
            "requests": client.requests,
            "statuses": dict(client.statuses),
            "errors": client.errors[:10],
            "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        }
    record["duration_s"] = round(time.monotonic() - started, 2)
    return record


def human_summary(sc: Scenario, record: dict[str, Any]) -> str:
    lines = [f"== {sc.name} on {record['base_url']} {record.get('label') or ''}".rstrip()]
    server = record.get("server") or {}
    if server:
        lines.append(f"   server: {server.get('name', '?')} {server.get('version', '')}")
    if not record.get("ok"):
        lines.append(f"   FAILED: {record.get('error')}")
    else:
        lines.extend("   " + line for line in sc.summary(record["result"]))
    proc = record.get("server_proc") or {}
    before, after, measured = proc.get("before"), proc.get("after"), proc.get("measured") or {}
    if before and after:
        lines.append(
            f"   server RSS {before['rss_mib']} -> {after['rss_mib']} MiB"
            + (
                f" (peak in measured phase {measured['rss_peak_mib']} MiB)"
                if measured.get("rss_peak_mib")
                else ""
            )
        )
    if measured:
        lines.append(
            f"   measured phase {measured.get('wall_s')} s: server CPU {measured.get('server_cpu_s')} s, "
            f"client CPU {measured.get('client_cpu_s')} s, "
            f"machine busy {measured.get('machine_busy_cpu_s')} s"
            + (f", database backends {measured['db_cpu_s']} s" if "db_cpu_s" in measured else "")
        )
    bad = {k: v for k, v in (record.get("client") or {}).get("statuses", {}).items() if k != "200"}
    if bad:
        lines.append(f"   non-200 responses / client errors: {bad}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sc = scenarios.get(args.scenario)
    params = resolve_params(sc, args)
    raise_fd_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    record = asyncio.run(
        run_scenario(
            sc,
            params,
            base_url=args.base_url.rstrip("/"),
            shared_secret=args.shared_secret,
            pid=args.pid,
            timeout=args.timeout,
            verbose=not args.quiet,
            profile_out=args.profile,
            db_name=args.db_name,
        )
    )
    record["label"] = args.label
    record["db"] = args.db
    record["quick"] = args.quick
    line = json.dumps(record, separators=(",", ":"), sort_keys=False)
    print(line, flush=True)
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "a") as fh:
            fh.write(line + "\n")
    print(human_summary(sc, record), file=sys.stderr, flush=True)
    return 0 if record.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
