"""Database families (Synapse's `synapse.storage.database` names) and the timing both engines share.

A transaction's `desc` is the name of the store method that opened it (Synapse names each
`runInteraction`; deriving it from the caller keeps every store unchanged). Statements outside a
transaction count as one-statement transactions, as Synapse's `execute` does.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import TYPE_CHECKING

from homeserver.metrics import CallbackGauge, counter, histogram
from homeserver.metrics.usage import record_db_txn

if TYPE_CHECKING:
    from homeserver.storage.database import Database

_DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

sched_timer = histogram(
    "synapse_storage_schedule_time", "Seconds waiting for a database connection", buckets=_DB_BUCKETS
)
query_timer = histogram(
    "synapse_storage_query_time", "Seconds per SQL statement, by verb", ["verb"], buckets=_DB_BUCKETS
)
txn_count = counter("synapse_storage_transaction_time_count", "Database transactions, by name", ["desc"])
txn_sum = counter(
    "synapse_storage_transaction_time_sum", "Seconds in database transactions, by name", ["desc"]
)
txn_duration = histogram(
    "homeserver_storage_transaction_duration_seconds",
    "Seconds per database transaction or single statement (excluding the wait for a connection)",
    ["kind"],
    buckets=_DB_BUCKETS,
)
_write_txn = txn_duration.labels("write")
_read = txn_duration.labels("read")


def caller_name(depth: int = 2) -> str:
    """Name of the function that called the engine method (the engine method is depth 1)."""
    return sys._getframe(depth).f_code.co_name


@lru_cache(maxsize=4096)
def _verb(sql: str) -> str:
    head = sql.lstrip().split(None, 1)
    return head[0].lower() if head else ""


def observe_statement(sql: str, seconds: float) -> None:
    query_timer.labels(_verb(sql)).observe(seconds)


def observe_txn(desc: str, sched_sec: float, txn_sec: float, *, write: bool) -> None:
    sched_timer.observe(sched_sec)
    txn_count.labels(desc).inc()
    txn_sum.labels(desc).inc(txn_sec)
    (_write_txn if write else _read).observe(txn_sec)
    record_db_txn(sched_sec, txn_sec)


pool_connections = CallbackGauge(
    "homeserver_db_pool_connections", "Database connections by state (SQLite: the one writer)", ["state"]
)
pool_waiting = CallbackGauge("homeserver_db_pool_waiting", "Tasks waiting for a database connection")


def bind_pool_gauges(db: Database) -> None:
    def connections(d: Database) -> dict[tuple[str, ...], float]:
        in_use, idle, _waiting = d.pool_stats()
        return {("in_use",): in_use, ("idle",): idle}

    pool_connections.bind(db, connections)
    pool_waiting.bind(db, lambda d: d.pool_stats()[2])
