"""Process-level families Synapse adds beside prometheus_client's `process_*` and `python_gc_*`:
build info, CPU split into user/system, garbage-collector pauses, and the event loop's lag.

None of these carry `server_name` (they describe the process, as in Synapse).
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import time
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from prometheus_client import REGISTRY, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from homeserver.metrics import histogram


def _version() -> str:
    try:
        return metadata.version("homeserver")
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO = Gauge(
    "synapse_build_info", "Build information", ["pythonversion", "version", "osversion", "rustcversion"]
)
BUILD_INFO.labels(
    f"{platform.python_implementation()} {platform.python_version()}",
    _version(),
    f"{platform.system()} {platform.release()}",
    "",  # no Rust in this server
).set(1)


class _CpuMetrics(Collector):
    """User and system CPU separately (prometheus_client only exports their sum)."""

    def collect(self) -> Iterable[Metric]:
        times = os.times()
        user = GaugeMetricFamily("process_cpu_user_seconds_total", "User CPU time in seconds")
        user.add_metric([], times.user)
        system = GaugeMetricFamily("process_cpu_system_seconds_total", "System CPU time in seconds")
        system.add_metric([], times.system)
        return [user, system]


class _GcCounts(Collector):
    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("python_gc_counts", "GC object counts", labels=["gen"])
        for gen, count in enumerate(gc.get_count()):
            family.add_metric([str(gen)], count)
        return [family]


GC_UNREACHABLE = Gauge("python_gc_unreachable_total", "Unreachable GC objects", ["gen"])
GC_TIME = Histogram(
    "python_gc_time",
    "Time taken to GC (sec)",
    ["gen"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 7.5, 15, 30, 45, 60),
)
_gc_started = 0.0


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    """gc.callbacks hook: Synapse drives the GC itself to time it; timing the automatic GC's
    start/stop gives the same families without changing when collections happen."""
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    gen = str(info.get("generation", 0))
    GC_TIME.labels(gen).observe(time.perf_counter() - _gc_started)
    GC_UNREACHABLE.labels(gen).set(info.get("collected", 0) + info.get("uncollectable", 0))


gc.callbacks.append(_on_gc)
REGISTRY.register(_CpuMetrics())
REGISTRY.register(_GcCounts())


EVENT_LOOP_LAG = histogram(
    "homeserver_event_loop_lag_seconds",
    "How late a timer set one second ahead fired: time the event loop was busy with other work",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class LoopLagMonitor:
    """One timer per second; its lateness is how long callbacks were blocked (Synapse's
    `python_twisted_reactor_tick_time` answers the same question for Twisted)."""

    INTERVAL = 1.0

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.INTERVAL
        self._handle = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        EVENT_LOOP_LAG.observe(max(0.0, now - self._due))
        self._due = now + self.INTERVAL
        self._handle = loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
