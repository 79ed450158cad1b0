"""Benchmark scenarios. Each module defines SCENARIO, a `bench.scenarios.base.Scenario`."""

from __future__ import annotations

from bench.scenarios.base import Scenario

NAMES = (
    "send",
    "fanout",
    "rooms",
    "initial_sync",
    "history",
    "join",
    "idle",
    "ws_fanout",
    "ws_idle",
    "big_rooms",
    "announcement",
    "connections",
    "cost_curve",
)


def get(name: str) -> Scenario:
    import importlib

    if name not in NAMES:
        raise KeyError(name)
    module = importlib.import_module(f"bench.scenarios.{name}")
    scenario: Scenario = module.SCENARIO
    return scenario


def all_scenarios() -> list[Scenario]:
    return [get(n) for n in NAMES]
