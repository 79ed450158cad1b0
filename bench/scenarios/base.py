"""Scenario plumbing shared by all scenarios: parameters, the run context, helpers to build rooms."""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.client import Client, User
from bench.procstat import Monitor, Profiler

T = TypeVar("T")


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    full: Any
    quick: Any
    help: str


@dataclass
class Scenario:
    name: str
    help: str
    params: list[Param]
    run: Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]
    summary: Callable[[dict[str, Any]], list[str]]
    # The figures `bench/compare` puts in its table: (key in result, label, "higher"|"lower" is better).
    headline: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Context:
    client: Client
    monitor: Monitor
    tag: str
    verbose: bool = True
    profiler: Profiler | None = None
    _t0: float = field(default_factory=time.monotonic)
    _client_cpu: dict[str, float] = field(default_factory=dict)

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"[{time.monotonic() - self._t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def mark(self, name: str) -> None:
        if name == "measure_end" and self.profiler is not None:
            self.profiler.stop()
        self.monitor.mark(name)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self._client_cpu[name] = ru.ru_utime + ru.ru_stime
        self._client_cpu[name + "@t"] = time.monotonic()
        if name == "measure_start" and self.profiler is not None:
            self.profiler.start()

    def measured(self, start: str = "measure_start", end: str = "measure_end") -> dict[str, Any]:
        """Server/machine/client CPU and RSS over the measured phase (between two marks)."""
        out = self.monitor.delta(start, end)
        if start in self._client_cpu and end in self._client_cpu:
            out["client_cpu_s"] = round(self._client_cpu[end] - self._client_cpu[start], 3)
        return out


async def bounded_gather(
    items: Iterable[T], fn: Callable[[T], Awaitable[Any]], concurrency: int
) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(item: T) -> Any:
        async with sem:
            return await fn(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


async def build_rooms(
    ctx: Context,
    owner: User,
    helpers: list[User],
    *,
    rooms: int,
    members: int,
    messages: int,
    concurrency: int = 8,
    name_prefix: str = "bench",
) -> list[str]:
    """`rooms` public rooms created by owner, each joined by `members` helpers (round robin) and
    holding `messages` messages sent by those members (or the owner when there are none)."""
    n_helpers = len(helpers)

    async def make(i: int) -> str:
        room_id = await ctx.client.create_room(owner, name=f"{name_prefix} {ctx.tag} {i}")
        room_members = [helpers[(i + k) % n_helpers] for k in range(min(members, n_helpers))]
        for member in room_members:
            await ctx.client.join(member, room_id)
        senders = room_members or [owner]
        for m in range(messages):
            await ctx.client.send_message(senders[m % len(senders)], room_id, f"{ctx.tag} room {i} msg {m}")
        return room_id

    created: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        async with sem:
            created.append(await make(i))
            done += 1
            if done % 100 == 0:
                ctx.log(f"  {done}/{rooms} rooms built")

    await asyncio.gather(*(one(i) for i in range(rooms)))
    return created


def sync_filter(
    *,
    timeline_limit: int | None = None,
    lazy_members: bool = False,
    rooms: list[str] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """A sync filter; `quiet` drops presence, account data and ephemeral events."""
    room: dict[str, Any] = {}
    if timeline_limit is not None:
        room["timeline"] = {"limit": timeline_limit}
    if lazy_members:
        room["state"] = {"lazy_load_members": True}
    if rooms is not None:
        room["rooms"] = rooms
    f: dict[str, Any] = {"room": room}
    if quiet:
        room["ephemeral"] = {"not_types": ["*"]}
        room["account_data"] = {"not_types": ["*"]}
        f["presence"] = {"not_types": ["*"]}
        f["account_data"] = {"not_types": ["*"]}
    return f
