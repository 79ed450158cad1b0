"""Hit, miss, size and eviction counts of the in-memory caches (Synapse's `synapse_util_caches_*`).

Each cache keeps a `CacheMetric` and bumps plain integers on its lookup path (a few nanoseconds); the
families are built from them only when `/metrics` is scraped. Like Synapse, the families are gauges
named without `_total` (`synapse_util_caches_cache` is hits + misses), so its dashboard's
`rate(...)` queries work unchanged.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from homeserver.metrics import SERVER_REGISTRY

OwnerT = TypeVar("OwnerT")


class CacheMetric:
    __slots__ = (
        "_owner",
        "_size",
        "evicted_invalidation",
        "evicted_size",
        "hits",
        "max_size",
        "misses",
        "name",
    )

    def __init__(self, name: str, owner: Any, size: Callable[[Any], int], max_size: int | None) -> None:
        self.name = name
        self.hits = 0
        self.misses = 0
        self.evicted_size = 0  # dropped because the cache was full
        self.evicted_invalidation = 0  # dropped because the entry became stale
        self.max_size = max_size
        self._owner = weakref.ref(owner)
        self._size = size

    def size(self) -> int | None:
        owner = self._owner()
        return None if owner is None else self._size(owner)


_caches: dict[str, CacheMetric] = {}


def register_cache(
    name: str, owner: OwnerT, size: Callable[[OwnerT], int], max_size: int | None = None
) -> CacheMetric:
    """A cache's metric; a later cache of the same name (a new server in the same process) replaces
    the earlier one."""
    metric = CacheMetric(name, owner, size, max_size)
    _caches[name] = metric
    return metric


class _CacheCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        size = GaugeMetricFamily("synapse_util_caches_cache_size", "Entries in the cache", labels=["name"])
        hits = GaugeMetricFamily(
            "synapse_util_caches_cache_hits", "Lookups answered by the cache", labels=["name"]
        )
        total = GaugeMetricFamily("synapse_util_caches_cache", "Lookups (hits and misses)", labels=["name"])
        evicted = GaugeMetricFamily(
            "synapse_util_caches_cache_evicted_size", "Entries evicted", labels=["name", "reason"]
        )
        max_size = GaugeMetricFamily("synapse_util_caches_cache_max_size", "Cache capacity", labels=["name"])
        for name, metric in sorted(_caches.items()):
            current = metric.size()
            if current is None:  # its server is gone
                continue
            size.add_metric([name], current)
            hits.add_metric([name], metric.hits)
            total.add_metric([name], metric.hits + metric.misses)
            evicted.add_metric([name, "size"], metric.evicted_size)
            evicted.add_metric([name, "invalidation"], metric.evicted_invalidation)
            if metric.max_size is not None:
                max_size.add_metric([name], metric.max_size)
        return [size, hits, total, evicted, max_size]

    def describe(self) -> Iterable[Metric]:
        return self.collect()


SERVER_REGISTRY.register(_CacheCollector())
