"""The Grafana dashboard and the Prometheus alert rules only query metrics the server exports:
a server is launched, given some traffic, and every metric name in their PromQL must be in its
/metrics output (as a sample or a declared family). Also: the files are well-formed."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from synapse_compat_tests.client import MatrixClient, register_user
from synapse_compat_tests.launcher import launch

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "homeserver.json"
ALERTS = REPO / "docker" / "prometheus" / "alerts.yml"
# Series Prometheus makes itself, not the server.
PROMETHEUS_OWN = {"up"}

PROMQL_WORDS = {
    # functions
    "rate",
    "irate",
    "increase",
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "topk",
    "bottomk",
    "histogram_quantile",
    "absent",
    "label_values",
    "delta",
    "deriv",
    "clamp_min",
    "clamp_max",
    "abs",
    "time",
    "vector",
    "scalar",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    # keywords
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    text = re.sub(r"label_values\(([^,)]+),[^)]*\)", r"(\1)", text)  # Grafana: (metric, label)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {n for n in names if n not in PROMQL_WORDS}


def exported_names(metrics_text: str) -> set[str]:
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.add(name)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def alert_rules() -> list[dict[str, object]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    server = launch("sqlite", tmp_path_factory.mktemp("hs"), overrides={"enable_metrics": True})
    try:
        admin = MatrixClient(server.base_url)
        _, token, _ = register_user(admin, server.shared_secret, "metricsuser")
        client = admin.with_token(token)
        room = client.post("/_matrix/client/v3/createRoom", {}).body["room_id"]
        for i in range(3):
            status, _, _ = client.put(
                f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t{i}",
                {"msgtype": "m.text", "body": str(i)},
            )
            assert status == 200
        status, _body, _ = client.get("/_matrix/client/v3/sync", params={"timeout": "0"})
        assert status == 200
        with urllib.request.urlopen(f"{server.base_url}/_synapse/metrics", timeout=10) as resp:
            yield exported_names(resp.read().decode())
    finally:
        server.stop()


def test_metric_name_extraction() -> None:
    assert metric_names("label_values(process_cpu_seconds_total, instance)") == {"process_cpu_seconds_total"}
    expr = 'sum by (le, servlet) (rate(a_b_bucket{x="rate(c)", y=~"$i"}[5m])) / on (k) b_total > 2'
    assert metric_names(expr) == {"a_b_bucket", "b_total"}


def test_dashboard_queries_exported_metrics(exported: set[str]) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) > 30
    missing = {name for expr in exprs for name in metric_names(expr)} - exported
    assert not missing, f"the dashboard queries metrics the server does not export: {sorted(missing)}"


def test_alerts_query_exported_metrics(exported: set[str]) -> None:
    names = {name for rule in alert_rules() for name in metric_names(str(rule["expr"]))}
    assert "up" in names
    missing = names - exported - PROMETHEUS_OWN
    assert not missing, f"alerts.yml queries metrics the server does not export: {sorted(missing)}"
    # And the server does not export `up` itself, so the exemption hides nothing.
    assert not (PROMETHEUS_OWN & exported)


def test_alert_rules_are_well_formed() -> None:
    rules = alert_rules()
    assert len(rules) >= 10
    seen: set[str] = set()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        name = str(rule["alert"])
        assert re.fullmatch(r"[A-Z][A-Za-z]+", name) and name not in seen, name
        seen.add(name)
        expr = str(rule["expr"])
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), name
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", str(rule["for"])), name
        labels = rule["labels"]
        assert isinstance(labels, dict) and labels["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and annotations["summary"], name
        anchor = str(annotations["runbook"]).split("#", 1)
        assert anchor[0] == "docs/operations.md", name
        doc = re.sub(r"^```.*?^```", "", (REPO / "docs" / "operations.md").read_text(), flags=re.M | re.S)
        headings = {
            re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", doc, re.M)
        }
        assert len(anchor) == 2 and anchor[1] in headings, f"{name}: no heading for {anchor}"


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in (
        "request rate",
        "persist",
        "sync wakeups",
        "fan-out",
        "cpu",
        "memory",
        "federation",
        "pushers",
        "appservices",
        "connection pool",
        "cache hit",
    ):
        assert topic in titles, topic
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), panel["title"]
    # The committed JSON is what contrib/build_dashboard.py generates.
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_dashboard", REPO / "contrib" / "build_dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == dashboard
