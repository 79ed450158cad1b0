"""Prometheus metrics, named like Synapse's where the concept is the same (see docs/metrics.md).

Families that describe the homeserver (not the Python process) carry Synapse's `server_name` label,
which its Grafana dashboard filters on. Rather than passing it on every call, they are registered in
`SERVER_REGISTRY` and one collector adds the label when `/metrics` is scraped: a hot path pays only
for its own labels. Process-level families (`process_*`, `python_*`, `synapse_build_info`) have no
`server_name`, as in Synapse; the dashboard joins them through `synapse_server_name_info`.

This package is a leaf: it imports only the standard library and prometheus_client, so storage,
domain and HTTP code can all feed it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

logger = logging.getLogger(__name__)

# `_created` series double the size of a scrape and no dashboard reads them (Synapse drops them too).
prometheus_client.disable_created_metrics()

SERVER_NAME_LABEL = "server_name"
SERVER_REGISTRY = CollectorRegistry(auto_describe=True)
_server_name = ""


def set_server_name(server_name: str) -> None:
    """Called once the config is known; every homeserver family is labelled with it."""
    global _server_name
    _server_name = server_name


def server_name() -> str:
    return _server_name


class _ServerNameCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        name = _server_name
        for family in SERVER_REGISTRY.collect():
            family.samples = [
                Sample(s.name, {**s.labels, SERVER_NAME_LABEL: name}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            ]
            yield family

    def describe(self) -> Iterable[Metric]:
        return ()


REGISTRY.register(_ServerNameCollector())


class _CachedLabels:
    """`labels(*values)` from a plain dict once a label set has been seen: prometheus_client's own
    lookup takes a lock and rebuilds the key (about 2 µs), and hot paths call it several times per
    request. Label sets are bounded by design (servlet names, not paths), so the dict is too."""

    _children: dict[tuple[str, ...], Any]

    def labels(self, *values: Any, **kwargs: Any) -> Any:
        if kwargs or not values:
            return super().labels(*values, **kwargs)  # type: ignore[misc]
        try:
            return self._children[values]
        except AttributeError:
            self._children = {}
        except KeyError:
            pass
        child = self._children[values] = super().labels(*values)  # type: ignore[misc]
        return child


class _Counter(_CachedLabels, Counter):
    pass


class _Gauge(_CachedLabels, Gauge):
    pass


class _Histogram(_CachedLabels, Histogram):
    pass


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    return _Counter(name, doc, labels, registry=SERVER_REGISTRY)


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return _Gauge(name, doc, labels, registry=SERVER_REGISTRY)


def histogram(
    name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS
) -> Histogram:
    return _Histogram(name, doc, labels, registry=SERVER_REGISTRY, buckets=buckets)


GaugeValue = float | Mapping[tuple[str, ...], float]


class CallbackGauge(Collector):
    """A gauge read at scrape time from a live object (Synapse's LaterGauge), e.g. a queue length.

    The owner is held weakly and the latest one wins: tests build many servers in one process and a
    stopped server must neither be kept alive nor reported.
    """

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.doc = doc
        self.labels = tuple(labels)
        self._owner: weakref.ref[Any] | None = None
        self._read: Callable[[Any], GaugeValue] | None = None
        SERVER_REGISTRY.register(self)

    def bind(self, owner: Any, read: Callable[[Any], GaugeValue]) -> None:
        self._owner = weakref.ref(owner)
        self._read = read

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.doc, labels=self.labels)
        owner = self._owner() if self._owner is not None else None
        if owner is not None and self._read is not None:
            try:
                value = self._read(owner)
            except Exception:  # one broken reader must not take the whole scrape down
                logger.exception("reading gauge %s failed", self.name)
                value = {}
            if isinstance(value, Mapping):
                for label_values, v in value.items():
                    family.add_metric(list(label_values), v)
            elif not self.labels:
                family.add_metric([], value)
        yield family

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.doc, labels=self.labels)]


# Maps the server_name to the scrape target (`instance`), so process-level families can be joined.
SERVER_NAME_INFO = gauge("synapse_server_name_info", "Maps the server_name to the instance it runs on")
SERVER_NAME_INFO.set(1)
