"""CPU and RSS of a set of named processes (a deployment's main, readers, pusher, front door...).

Each process is read on its own (with its own children only), from /proc, so the table can say what
each one costs. `ProcessSetMonitor` is a `bench.procstat.Monitor` whose marks also record every
named process, so a scenario's measured phase (its `measure_start`/`measure_end` marks) gives a
per-process CPU share.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from bench.procstat import (
    Monitor,
    Sample,
    _cpu_seconds,
    _rss_bytes,
    db_cpu_seconds,
    machine_busy_seconds,
    process_tree,
)

Snapshot = dict[str, tuple[float, int]]  # name -> (CPU seconds, RSS bytes)


def snapshot(processes: dict[str, int]) -> Snapshot:
    """Each named process with its descendants (nginx's worker is a child of its master)."""
    out: Snapshot = {}
    for name, pid in processes.items():
        cpu, rss = 0.0, 0
        for p in process_tree(pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                cpu, rss = cpu + _cpu_seconds(p), rss + _rss_bytes(p)
        if rss:
            out[name] = (cpu, rss)
    return out


def usage(before: Snapshot, after: Snapshot, seconds: float) -> dict[str, dict[str, float]]:
    """Per process: CPU as percent of one core over `seconds`, and RSS (MiB) at the end."""
    return {
        name: {
            "cpu_percent": round(100 * (after[name][0] - before[name][0]) / seconds, 2) if seconds else 0.0,
            "rss_mb": round(after[name][1] / 2**20, 1),
        }
        for name in after
        if name in before
    }


def background_load(seconds: float = 1.0) -> dict[str, float]:
    """Cores kept busy by everything on the machine over `seconds` (run it while the benchmarked
    servers are idle: what remains is other jobs), and the 1-minute load average."""
    a = machine_busy_seconds()
    time.sleep(seconds)
    return {
        "busy_cores": round((machine_busy_seconds() - a) / seconds, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


class ProcessSetMonitor(Monitor):
    """A Monitor on the main process whose marks also snapshot every named process and the
    deployment's PostgreSQL backends."""

    def __init__(self, processes: dict[str, int], db_name: str | None = None) -> None:
        super().__init__(processes.get("main"), db_name=db_name)
        self.processes = processes
        self.snapshots: dict[str, tuple[float, Snapshot, float | None]] = {}

    def mark(self, name: str) -> Sample | None:
        self.snapshots[name] = (time.monotonic(), snapshot(self.processes), db_cpu_seconds(self.db_name))
        return super().mark(name)

    def per_process(self, start: str = "measure_start", end: str = "measure_end") -> dict[str, Any]:
        if start not in self.snapshots or end not in self.snapshots:
            return {}
        t0, a, db0 = self.snapshots[start]
        t1, b, db1 = self.snapshots[end]
        out: dict[str, Any] = usage(a, b, t1 - t0)
        if db0 is not None and db1 is not None and t1 > t0:
            # Backends that exited in between take their CPU with them: a lower bound.
            out["postgres"] = {"cpu_percent": round(100 * max(0.0, db1 - db0) / (t1 - t0), 2)}
        return out
