# ruff: noqa: E501
"""Writes docker/grafana/dashboards/homeserver.json (run after editing the panels below).

The dashboard is generated so that every panel has the same shape; the JSON is what Grafana
imports and what tests/ops/test_dashboard_alerts.py checks against a live server's /metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "docker" / "grafana" / "dashboards" / "homeserver.json"
SEL = 'instance=~"$instance"'
RI = "[$__rate_interval]"


def q(quantile: float, family: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({quantile}, sum by ({group}) (rate({family}_bucket{{{SEL}}}{RI})))"


# (section, [(title, unit, [(expr, legend)])])
SECTIONS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]]]]]] = [
    (
        "Requests",
        [
            (
                "Request rate by endpoint",
                "reqps",
                [
                    (
                        f"sum by (servlet) (rate(synapse_http_server_requests_received_total{{{SEL}}}{RI}))",
                        "{{servlet}}",
                    )
                ],
            ),
            (
                "Responses by status",
                "reqps",
                [(f"sum by (code) (rate(synapse_http_server_responses_total{{{SEL}}}{RI}))", "{{code}}")],
            ),
            (
                "p95 response time by endpoint (non-sync)",
                "s",
                [
                    (
                        f'histogram_quantile(0.95, sum by (le, servlet) (rate(synapse_http_server_response_time_seconds_bucket{{{SEL}, tag=""}}{RI})))',
                        "{{servlet}}",
                    )
                ],
            ),
            (
                "p50/p95 /sync response time",
                "s",
                [
                    (
                        f'histogram_quantile(0.5, sum by (le, tag) (rate(synapse_http_server_response_time_seconds_bucket{{{SEL}, tag=~".+_sync"}}{RI})))',
                        "p50 {{tag}}",
                    ),
                    (
                        f'histogram_quantile(0.95, sum by (le, tag) (rate(synapse_http_server_response_time_seconds_bucket{{{SEL}, tag=~".+_sync"}}{RI})))',
                        "p95 {{tag}}",
                    ),
                ],
            ),
            (
                "Requests in flight",
                "short",
                [
                    (
                        f"sum by (instance) (synapse_http_server_in_flight_requests_count{{{SEL}}})",
                        "{{instance}}",
                    )
                ],
            ),
            (
                "Rate-limited requests",
                "reqps",
                [
                    (
                        f"sum by (rate_limiter_name) (rate(synapse_rate_limit_reject_total{{{SEL}}}{RI}))",
                        "{{rate_limiter_name}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Events and sync",
        [
            (
                "Events persisted",
                "ops",
                [
                    (f"sum(rate(synapse_storage_events_persisted_events_total{{{SEL}}}{RI}))", "events/s"),
                    (
                        f"sum by (type) (rate(synapse_storage_events_persisted_events_sep_total{{{SEL}}}{RI}))",
                        "{{type}}",
                    ),
                ],
            ),
            (
                "Event persist latency",
                "s",
                [
                    (q(0.5, "homeserver_persist_event_seconds"), "p50"),
                    (q(0.95, "homeserver_persist_event_seconds"), "p95"),
                    (q(0.99, "homeserver_persist_event_seconds"), "p99"),
                ],
            ),
            (
                "Persister queue and batch size",
                "short",
                [
                    (f"sum(homeserver_persist_queue_length{{{SEL}}})", "queued events"),
                    (q(0.95, "homeserver_persist_batch_size"), "p95 batch size"),
                ],
            ),
            (
                "Sync wakeups by stream",
                "ops",
                [
                    (
                        f"sum by (stream) (rate(synapse_notifier_users_woken_by_stream_total{{{SEL}}}{RI}))",
                        "{{stream}}",
                    ),
                    (f"sum(synapse_notifier_listeners{{{SEL}}})", "parked /sync"),
                ],
            ),
            (
                "Fan-out delay (notification to woken /sync)",
                "s",
                [
                    (q(0.5, "homeserver_sync_wakeup_seconds"), "p50"),
                    (q(0.95, "homeserver_sync_wakeup_seconds"), "p95"),
                    (q(0.99, "homeserver_sync_wakeup_seconds"), "p99"),
                ],
            ),
            (
                "Persisted stream position per process",
                "short",
                [(f"synapse_event_persisted_position{{{SEL}}}", "{{instance}}")],
            ),
        ],
    ),
    (
        "Processes",
        [
            (
                "CPU per process",
                "percentunit",
                [(f"rate(process_cpu_seconds_total{{{SEL}}}{RI})", "{{instance}}")],
            ),
            (
                "Resident memory per process",
                "bytes",
                [(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
            ),
            (
                "Event loop lag (p99)",
                "s",
                [
                    (
                        f"histogram_quantile(0.99, sum by (le, instance) (rate(homeserver_event_loop_lag_seconds_bucket{{{SEL}}}{RI})))",
                        "{{instance}}",
                    )
                ],
            ),
            (
                "Open file descriptors",
                "short",
                [
                    (f"process_open_fds{{{SEL}}}", "{{instance}}"),
                    (f"process_max_fds{{{SEL}}}", "max {{instance}}"),
                ],
            ),
        ],
    ),
    (
        "Queues",
        [
            (
                "Federation: pending PDUs/EDUs",
                "short",
                [
                    (f"sum(synapse_federation_transaction_queue_pending_pdus{{{SEL}}})", "PDUs"),
                    (f"sum(synapse_federation_transaction_queue_pending_edus{{{SEL}}})", "EDUs"),
                    (
                        f"sum(homeserver_federation_sender_destinations_catching_up{{{SEL}}})",
                        "destinations catching up",
                    ),
                ],
            ),
            (
                "Pushers: pending and delivery delay",
                "short",
                [
                    (f"sum by (kind) (homeserver_push_pending_pushers{{{SEL}}})", "pending {{kind}}"),
                    (
                        f"histogram_quantile(0.95, sum by (le, kind) (rate(homeserver_push_delivery_delay_seconds_bucket{{{SEL}}}{RI})))",
                        "p95 delay {{kind}} (s)",
                    ),
                    (
                        f"sum by (kind) (rate(homeserver_push_failed_total{{{SEL}}}{RI}))",
                        "failures/s {{kind}}",
                    ),
                ],
            ),
            (
                "Appservices: pending",
                "short",
                [
                    (
                        f"sum by (service) (homeserver_appservice_pending_events{{{SEL}}})",
                        "events {{service}}",
                    ),
                    (
                        f"sum by (service) (homeserver_appservice_pending_transactions{{{SEL}}})",
                        "transactions {{service}}",
                    ),
                    (
                        f"max by (service) (homeserver_appservice_events_stream_lag{{{SEL}}})",
                        "stream lag {{service}}",
                    ),
                ],
            ),
            (
                "Presence writes pending",
                "short",
                [(f"sum(homeserver_presence_pending_writes{{{SEL}}})", "rows")],
            ),
        ],
    ),
    (
        "Database",
        [
            (
                "Connection pool",
                "short",
                [
                    (
                        f"sum by (instance, state) (homeserver_db_pool_connections{{{SEL}}})",
                        "{{instance}} {{state}}",
                    ),
                    (f"sum by (instance) (homeserver_db_pool_waiting{{{SEL}}})", "{{instance}} waiting"),
                ],
            ),
            (
                "Wait for a connection (p95)",
                "s",
                [(q(0.95, "synapse_storage_schedule_time", "instance"), "{{instance}}")],
            ),
            (
                "Transaction duration (p95)",
                "s",
                [(q(0.95, "homeserver_storage_transaction_duration_seconds", "kind"), "{{kind}}")],
            ),
            (
                "Top transactions by time",
                "s",
                [
                    (
                        f"topk(10, sum by (desc) (rate(synapse_storage_transaction_time_sum_total{{{SEL}}}{RI})))",
                        "{{desc}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Caches",
        [
            (
                "Cache hit ratio",
                "percentunit",
                [
                    (
                        f"sum by (name) (rate(synapse_util_caches_cache_hits{{{SEL}}}{RI})) / sum by (name) (rate(synapse_util_caches_cache{{{SEL}}}{RI}))",
                        "{{name}}",
                    )
                ],
            ),
            (
                "Cache size",
                "short",
                [(f"sum by (name) (synapse_util_caches_cache_size{{{SEL}}})", "{{name}}")],
            ),
            (
                "Cache evictions",
                "ops",
                [
                    (
                        f"sum by (name, reason) (rate(synapse_util_caches_cache_evicted_size{{{SEL}}}{RI}))",
                        "{{name}} {{reason}}",
                    )
                ],
            ),
        ],
    ),
]


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    panel_id = 1
    for section, items in SECTIONS:
        panels.append(
            {
                "type": "row",
                "title": section,
                "id": panel_id,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        for index, (title, unit, targets) in enumerate(items):
            panels.append(
                {
                    "type": "timeseries",
                    "title": title,
                    "id": panel_id,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": y + 8 * (index // 2)},
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                    "targets": [
                        {
                            "refId": chr(ord("A") + n),
                            "expr": expr,
                            "legendFormat": legend,
                            "datasource": {"type": "prometheus", "uid": "${datasource}"},
                        }
                        for n, (expr, legend) in enumerate(targets)
                    ],
                }
            )
            panel_id += 1
        y += 8 * ((len(items) + 1) // 2)
    return {
        "uid": "homeserver-overview",
        "title": "Homeserver",
        "tags": ["matrix", "homeserver"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "instance",
                    "type": "query",
                    "label": "Process",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {
                        "query": "label_values(process_cpu_seconds_total, instance)",
                        "refId": "instance",
                    },
                    "definition": "label_values(process_cpu_seconds_total, instance)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "refresh": 2,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")
