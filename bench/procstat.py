"""Server process sampling through /proc: RSS and CPU time (user + system) of a pid and its children.

The load tool only ever reads /proc; it never signals the server. CPU is summed over the process and
all its descendants (a server with worker processes is measured whole); RSS likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    with contextlib.suppress(OSError):
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def process_tree(pid: int, limit: int = 256) -> list[int]:
    """pid and its descendants (bounded)."""
    seen: list[int] = []
    todo = [pid]
    while todo and len(seen) < limit:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


def _cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces or parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def _rss_bytes(pid: int) -> int:
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * _PAGE


def _threads(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (from /proc/stat): server, client, database."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    vals = [int(v) for v in first[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    busy = sum(vals[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / _TICKS


@dataclass(frozen=True)
class Sample:
    t: float
    rss: int
    cpu: float
    machine_busy: float
    threads: int
    fds: int
    procs: int
    db_cpu: float | None = None  # PostgreSQL backends serving the server's database

    def to_json(self) -> dict[str, Any]:
        return {
            "rss_mib": round(self.rss / 1048576, 1),
            "cpu_s": round(self.cpu, 3),
            "threads": self.threads,
            "fds": self.fds,
            "procs": self.procs,
        }


def postgres_backends(db_name: str) -> list[int]:
    """Pids of PostgreSQL backend processes connected to database `db_name` (read from their titles,
    "postgres: <cluster>: <user> <database> <host(port)> <state>")."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                title = (
                    Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if title.startswith("postgres: ") and f" {db_name} " in title:
                out.append(int(entry))
    return out


def db_cpu_seconds(db_name: str | None) -> float | None:
    if not db_name:
        return None
    total = 0.0
    for p in postgres_backends(db_name):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += _cpu_seconds(p)
    return total


def sample(pid: int | None, db_name: str | None = None) -> Sample | None:
    if not pid:
        return None
    rss = 0
    cpu = 0.0
    threads = 0
    fds = 0
    pids = process_tree(pid)
    alive = 0
    for p in pids:
        try:
            rss += _rss_bytes(p)
            cpu += _cpu_seconds(p)
        except (OSError, ValueError, IndexError):
            continue
        alive += 1
        threads += _threads(p)
        fds += _fds(p)
    if alive == 0:
        return None
    return Sample(
        time.monotonic(), rss, cpu, machine_busy_seconds(), threads, fds, alive, db_cpu_seconds(db_name)
    )


class Monitor:
    """Samples the server every `interval` seconds in the background; keeps peak RSS and CPU series.

    `mark(name)` records a named sample (e.g. "before", "setup_done", "after") so scenarios can report
    CPU deltas over exactly their measured phase.
    """

    def __init__(
        self, pid: int | None, interval: float = 0.5, max_samples: int = 20_000, db_name: str | None = None
    ) -> None:
        self.pid = pid
        self.db_name = db_name
        self.interval = interval
        self.max_samples = max_samples
        self.samples: list[Sample] = []
        self.marks: dict[str, Sample] = {}
        self._task: asyncio.Task[None] | None = None

    def mark(self, name: str) -> Sample | None:
        s = sample(self.pid, self.db_name)
        if s is not None:
            self.marks[name] = s
            self._keep(s)
        return s

    def _keep(self, s: Sample) -> None:
        if len(self.samples) < self.max_samples:
            self.samples.append(s)

    async def _run(self) -> None:
        while True:
            s = sample(self.pid)
            if s is not None:
                self._keep(s)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.pid and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def peak_rss_between(self, t0: float, t1: float) -> int | None:
        vals = [s.rss for s in self.samples if t0 <= s.t <= t1]
        return max(vals) if vals else None

    def delta(self, start: str, end: str) -> dict[str, Any]:
        a, b = self.marks.get(start), self.marks.get(end)
        if a is None or b is None:
            return {}
        peak = self.peak_rss_between(a.t, b.t)
        db = {}
        if a.db_cpu is not None and b.db_cpu is not None:
            # Backends that exited during the phase take their CPU time with them: a lower bound.
            db["db_cpu_s"] = round(max(0.0, b.db_cpu - a.db_cpu), 3)
        return {
            **db,
            "wall_s": round(b.t - a.t, 3),
            "server_cpu_s": round(b.cpu - a.cpu, 3),
            "machine_busy_cpu_s": round(b.machine_busy - a.machine_busy, 3),
            "server_cpu_util": round((b.cpu - a.cpu) / (b.t - a.t), 3) if b.t > a.t else None,
            "rss_peak_mib": round(peak / 1048576, 1) if peak else None,
        }


def find_py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else None


class Profiler:
    """py-spy sampling the server over a scenario's measured phase (raw collapsed stacks to `out`)."""

    def __init__(self, pid: int, out: str, rate: int = 100) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    def start(self) -> None:
        exe = find_py_spy()
        if exe is None:
            self.error = "py-spy not installed"
            return
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--rate",
                str(self.rate),
                "--nonblocking",
                "--subprocesses",
                "--output",
                self.out,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.3)  # let it attach before the measured work starts

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if self.proc.returncode not in (0, -signal.SIGINT) and not os.path.exists(self.out):
            self.error = (err or b"").decode(errors="replace")[-300:]
        self.proc = None
