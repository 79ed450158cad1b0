"""docker/compose.yaml and the config files it mounts, checked without a Docker engine: the
services the deployment needs, what each waits for, healthchecks, mounts that exist, and configs
our loader accepts. (`docker compose config` needs the engine's CLI, which is not available here.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.config import load_config
from homeserver.config.workers import check_worker_setup

DOCKER = Path(__file__).resolve().parents[2] / "docker"
WORKERS = {
    "reader1": "client_reader",
    "reader2": "client_reader",
    "pusher1": "pusher",
    "fedsender1": "federation_sender",
    "media1": "media",
    "federation1": "federation_inbound",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _depends(service: dict[str, Any]) -> dict[str, Any]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "depends_on must use the long form with conditions"
    return deps


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {"postgres", "redis", "main", "nginx", *WORKERS}
    assert expected <= set(services)
    for always in expected:
        assert "profiles" not in services[always], always
    assert services["clamav"]["profiles"] == ["clamav"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]


def test_every_service_has_a_healthcheck_and_dependencies_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
        for dep, spec in _depends(service).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec["condition"] == "service_healthy", (name, dep)
            # A service without a profile must not wait for one that only runs with a profile.
            if "profiles" not in service:
                assert "profiles" not in services[dep], (name, dep)


def test_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(_depends(services["main"])) == {"postgres", "redis"}
    for worker in WORKERS:
        # Workers start after main (which migrates) and Redis.
        assert {"main", "redis"} <= set(_depends(services[worker])), worker
    assert {"main", "reader1", "reader2", "media1", "federation1"} <= set(_depends(services["nginx"]))
    # No cycle.
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle {(*path, name)}"
        if name in seen:
            return
        for dep in _depends(services[name]):
            visit(dep, (*path, name))
        seen.add(name)

    for name in services:
        visit(name, ())


def test_volumes_mounts_exist_and_named_volumes_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source} missing"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
    # main and every worker share the data volume (signing key, media store).
    for name in ("main", *WORKERS):
        assert any(m.startswith("homeserver_data:/data") for m in compose["services"][name]["volumes"]), name


def test_healthcheck_ports_match_the_configs(compose: dict[str, Any]) -> None:
    for name in ("main", *WORKERS):
        service = compose["services"][name]
        check = " ".join(service["healthcheck"]["test"])
        port = int(re.search(r"127\.0\.0\.1:(\d+)/health", check).group(1))  # type: ignore[union-attr]
        config = yaml.safe_load(
            (DOCKER / "config" / ("homeserver.yaml" if name == "main" else f"{name}.yaml")).read_text()
        )
        assert port in [listener["port"] for listener in config["listeners"]], name


def test_nginx_upstreams_name_the_compose_services_and_ports() -> None:
    conf = (DOCKER / "nginx" / "matrix.conf").read_text()
    servers = re.findall(r"^\s*server (\w+):(\d+)", conf, re.M)
    assert servers
    for host, port in servers:
        config = yaml.safe_load(
            (DOCKER / "config" / ("homeserver.yaml" if host == "main" else f"{host}.yaml")).read_text()
        )
        assert int(port) in [listener["port"] for listener in config["listeners"]], (host, port)


def test_prometheus_scrapes_every_process(compose: dict[str, Any]) -> None:
    prom = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = {
        t.split(":")[0] for sc in prom["scrape_configs"] for st in sc["static_configs"] for t in st["targets"]
    }
    assert targets == {"main", *WORKERS}


@pytest.mark.parametrize("worker", [None, *WORKERS])
def test_configs_load(tmp_path: Path, worker: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process's config directory (shared file + its worker file) passes our loader."""
    for key in list(__import__("os").environ):
        if key.startswith("HOMESERVER"):
            monkeypatch.delenv(key)
    conf = tmp_path / "etc"
    conf.mkdir()
    shared = yaml.safe_load((DOCKER / "config" / "homeserver.yaml").read_text())
    shared["data_dir"] = str(tmp_path / "data")  # only so the loader does not touch /data
    (conf / "00-homeserver.yaml").write_text(yaml.safe_dump(shared))
    if worker:
        worker_raw = yaml.safe_load((DOCKER / "config" / f"{worker}.yaml").read_text())
        assert worker_raw["worker_name"] == worker and worker_raw["worker_role"] == WORKERS[worker]
        (conf / "10-worker.yaml").write_text(yaml.safe_dump(worker_raw))
    config = load_config(str(conf))
    check_worker_setup(config.workers, config.redis.enabled, config.database.engine)  # as `run` does
    assert config.server_name == "example.com"
    assert config.enable_metrics
    assert any(listener.type == "metrics" and listener.port == 9000 for listener in config.listeners)
