"""Resource usage per request, background job and measured block (Synapse's logcontext usage).

The current `ResourceUsage` lives in a context variable: the database engines add each
transaction's time to it, so a request's access-log line and its `*_db_txn_*` families say how much
database time that request cost. Tasks created while a usage is current inherit it (asyncio copies
the context), which is what we want for work done on a request's behalf.

CPU time is measured only for synchronous blocks (`Measure` used with `with` around code that does
not await): in an event loop other tasks run during an `await`, so a CPU delta across one would
count their work too.
"""

from __future__ import annotations

import contextvars
import resource
import time
from collections.abc import Awaitable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from homeserver.metrics import CallbackGauge, counter

T = TypeVar("T")


class ResourceUsage:
    __slots__ = ("db_sched_duration_sec", "db_txn_count", "db_txn_duration_sec", "evt_db_fetch_count")

    def __init__(self) -> None:
        self.db_txn_count = 0
        self.db_txn_duration_sec = 0.0
        self.db_sched_duration_sec = 0.0
        self.evt_db_fetch_count = 0

    def add(self, other: ResourceUsage) -> None:
        self.db_txn_count += other.db_txn_count
        self.db_txn_duration_sec += other.db_txn_duration_sec
        self.db_sched_duration_sec += other.db_sched_duration_sec
        self.evt_db_fetch_count += other.evt_db_fetch_count


current_usage: contextvars.ContextVar[ResourceUsage | None] = contextvars.ContextVar(
    "resource_usage", default=None
)


def record_db_txn(sched_sec: float, txn_sec: float) -> None:
    """Called by the database engines once per transaction or statement outside one."""
    usage = current_usage.get()
    if usage is not None:
        usage.db_txn_count += 1
        usage.db_sched_duration_sec += sched_sec
        usage.db_txn_duration_sec += txn_sec


def record_events_fetched(count: int) -> None:
    """Events loaded from the database (not the cache): the access log's `[N dbevts]`."""
    usage = current_usage.get()
    if usage is not None:
        usage.evt_db_fetch_count += count


# -- measured blocks (synapse.util.metrics.Measure) ------------------------------------------------

_BLOCK = ["block_name"]
block_counter = counter("synapse_util_metrics_block_count", "Times this block has run", _BLOCK)
block_timer = counter("synapse_util_metrics_block_time_seconds", "Wall time spent in this block", _BLOCK)
block_ru_utime = counter("synapse_util_metrics_block_ru_utime_seconds", "User CPU in this block", _BLOCK)
block_ru_stime = counter("synapse_util_metrics_block_ru_stime_seconds", "System CPU in this block", _BLOCK)
block_db_txn_count = counter(
    "synapse_util_metrics_block_db_txn_count", "Database transactions completed in this block", _BLOCK
)
block_db_txn_duration = counter(
    "synapse_util_metrics_block_db_txn_duration_seconds", "Seconds in database transactions", _BLOCK
)
block_db_sched_duration = counter(
    "synapse_util_metrics_block_db_sched_duration_seconds", "Seconds waiting for a connection", _BLOCK
)


def _thread_cpu() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_utime, ru.ru_stime


class _BlockChildren:
    """The labelled children of one block name, looked up once (blocks run on every request)."""

    __slots__ = ("count", "db_sched", "db_txn", "db_txn_duration", "stime", "time", "utime")

    def __init__(self, name: str) -> None:
        self.count = block_counter.labels(name)
        self.time = block_timer.labels(name)
        self.utime = block_ru_utime.labels(name)
        self.stime = block_ru_stime.labels(name)
        self.db_txn = block_db_txn_count.labels(name)
        self.db_txn_duration = block_db_txn_duration.labels(name)
        self.db_sched = block_db_sched_duration.labels(name)


_block_children: dict[str, _BlockChildren] = {}


def _children_of(name: str) -> _BlockChildren:
    children = _block_children.get(name)
    if children is None:  # block names are literals: bounded
        children = _block_children[name] = _BlockChildren(name)
    return children


class Measure:
    """Time a named block; `with` for synchronous code (adds CPU), `async with` around awaits.

    The block's database usage also counts for the enclosing request or job.
    """

    __slots__ = ("_cpu", "_name", "_parent", "_start", "_token", "_usage")

    def __init__(self, name: str) -> None:
        self._name = name

    def _enter(self) -> None:
        self._start = time.perf_counter()
        self._parent = current_usage.get()
        self._usage = ResourceUsage()
        self._token = current_usage.set(self._usage)

    def _exit(self) -> None:
        current_usage.reset(self._token)
        usage = self._usage
        children = _children_of(self._name)
        children.count.inc()
        children.time.inc(time.perf_counter() - self._start)
        if usage.db_txn_count:
            children.db_txn.inc(usage.db_txn_count)
            children.db_txn_duration.inc(usage.db_txn_duration_sec)
            children.db_sched.inc(usage.db_sched_duration_sec)
        if self._parent is not None:
            self._parent.add(usage)

    def __enter__(self) -> Measure:
        self._cpu = _thread_cpu()
        self._enter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        utime, stime = _thread_cpu()
        children = _children_of(self._name)
        children.utime.inc(max(0.0, utime - self._cpu[0]))
        children.stime.inc(max(0.0, stime - self._cpu[1]))
        self._exit()

    async def __aenter__(self) -> Measure:
        self._enter()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit()


# -- background processes (synapse.metrics.background_process_metrics) -----------------------------

_NAME = ["name"]
bg_start_count = counter("synapse_background_process_start_count", "Background processes started", _NAME)
bg_db_txn_count = counter(
    "synapse_background_process_db_txn_count", "Database transactions done by background processes", _NAME
)
bg_db_txn_duration = counter(
    "synapse_background_process_db_txn_duration_seconds",
    "Seconds background processes spent in database transactions, excluding scheduling time",
    _NAME,
)
bg_db_sched_duration = counter(
    "synapse_background_process_db_sched_duration_seconds",
    "Seconds background processes spent waiting for database connections",
    _NAME,
)


class _InFlight:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def read(self) -> dict[tuple[str, ...], float]:
        return {(name,): n for name, n in self.counts.items()}


_in_flight = _InFlight()
bg_in_flight = CallbackGauge(
    "synapse_background_process_in_flight_count", "Background processes in flight", _NAME
)
bg_in_flight.bind(_in_flight, _InFlight.read)


async def background_process(name: str, work: Awaitable[T] | Coroutine[Any, Any, T]) -> T:
    """Run `work` as the named background job: counted, in flight, with its own database usage."""
    bg_start_count.labels(name).inc()
    counts = _in_flight.counts
    counts[name] = counts.get(name, 0) + 1
    usage = ResourceUsage()
    token = current_usage.set(usage)
    try:
        return await work
    finally:
        current_usage.reset(token)
        counts[name] -= 1
        if usage.db_txn_count:
            bg_db_txn_count.labels(name).inc(usage.db_txn_count)
            bg_db_txn_duration.labels(name).inc(usage.db_txn_duration_sec)
            bg_db_sched_duration.labels(name).inc(usage.db_sched_duration_sec)
