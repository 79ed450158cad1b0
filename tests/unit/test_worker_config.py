"""Worker roles in the config (worker_app / worker_name / instance_map) and what each role serves."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.config import ConfigError, load_config
from homeserver.config.workers import ROLES, check_worker_setup, with_role
from homeserver.replication.roles import ROLE_SPECS, serves_locally

WORKER = {
    "redis": {"enabled": True},
    "worker_replication_secret": "s3cret",
    "instance_map": {"main": {"host": "10.0.0.1", "port": 9093}},
}


def load(**raw: Any) -> Any:
    return load_config(None, env={}, overrides=raw)


def test_embedded_default_is_main() -> None:
    workers = load().workers
    assert (workers.role, workers.name, workers.is_main) == ("main", "main", True)
    check_worker_setup(workers, redis_enabled=False)  # main needs nothing


@pytest.mark.parametrize(
    ("app", "role"),
    [
        ("synapse.app.client_reader", "client_reader"),
        ("synapse.app.pusher", "pusher"),
        ("synapse.app.federation_reader", "federation_inbound"),
        ("synapse.app.media_repository", "media"),
        ("synapse.app.homeserver", "main"),
        ("client_reader", "client_reader"),
        ("background", "background"),
    ],
)
def test_worker_app_names(app: str, role: str) -> None:
    assert load(worker_app=app, **WORKER).workers.role == role


def test_generic_worker_takes_worker_role() -> None:
    workers = load(
        worker_app="synapse.app.generic_worker", worker_role="pusher", worker_name="p1", **WORKER
    ).workers
    assert (workers.role, workers.name) == ("pusher", "p1")
    assert load(worker_app="synapse.app.generic_worker", **WORKER).workers.role == "client_reader"


def test_instance_map_gives_main_url() -> None:
    assert load(**WORKER).workers.main_url == "http://10.0.0.1:9093"
    tls = load(instance_map={"main": {"host": "m", "port": 443, "tls": True}}).workers
    assert tls.main_url == "https://m:443"
    assert load(worker_main_url="http://m:1/").workers.main_url == "http://m:1"


def test_unknown_role_names_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        load(worker_app="synapse.app.everything")
    assert str(err.value) == (
        "worker_app: unknown worker role 'synapse.app.everything' (roles: " + ", ".join(ROLES) + ")"
    )


def test_command_line_role_wins() -> None:
    workers = with_role(load(**WORKER).workers, "client_reader")
    assert (workers.role, workers.name) == ("client_reader", "client_reader")
    named = with_role(load(worker_name="r7", **WORKER).workers, "client_reader")
    assert named.name == "r7"
    with pytest.raises(ConfigError):
        with_role(load().workers, "nope")


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("redis", "redis: a client_reader worker needs `redis: {enabled: true}`"),
        ("worker_replication_secret", "worker_replication_secret: a worker needs the shared secret"),
        ("instance_map", "instance_map: a worker needs the main process's address"),
    ],
)
def test_worker_needs_redis_secret_and_main(remove: str, message: str) -> None:
    raw = {k: v for k, v in WORKER.items() if k != remove}
    workers = load(worker_app="client_reader", **raw).workers
    redis_enabled = remove != "redis"
    with pytest.raises(ConfigError) as err:
        check_worker_setup(workers, redis_enabled)
    assert str(err.value).startswith(message)


def test_worker_needs_postgres() -> None:
    workers = load(worker_app="client_reader", **WORKER).workers
    with pytest.raises(ConfigError) as err:
        check_worker_setup(workers, True, "sqlite")
    assert str(err.value) == "database: a client_reader worker needs PostgreSQL (every process shares it)"
    check_worker_setup(workers, True, "postgres")


def test_pusher_and_appservice_handoff() -> None:
    workers = load(pusher_instances=["p1"], notify_appservices_from_worker="as1", **WORKER).workers
    assert workers.pusher_instances == ("p1",)
    assert workers.appservice_worker == "as1"
    assert load(run_background_tasks_on="main").workers.background_worker is None


def test_federation_sender_handoff() -> None:
    raw = {"worker_app": "federation_sender", "worker_name": "fs1", **WORKER}
    workers = load(federation_sender_instances=["fs1"], **raw).workers
    assert workers.federation_sender_instances == ("fs1",)
    check_worker_setup(workers, True)
    # a federation_sender worker main does not hand the queue to would idle: refused at start
    for listed in ([], ["fs2"]):
        with pytest.raises(ConfigError) as err:
            check_worker_setup(load(federation_sender_instances=listed, **raw).workers, True)
        assert str(err.value).startswith(
            "federation_sender_instances: the federation_sender worker 'fs1' must be named in"
        )
    with pytest.raises(ConfigError) as err:  # one queue per destination: no sharding
        load(federation_sender_instances=["fs1", "fs2"])
    assert str(err.value) == (
        "federation_sender_instances: only one federation sender instance is supported"
        " (destinations are not sharded)"
    )


def test_role_route_sets() -> None:
    reader = ROLE_SPECS["client_reader"]
    assert serves_locally(reader, "GET", "sync", "client") is True
    assert serves_locally(reader, "POST", "search", "client") is True
    assert serves_locally(reader, "PUT", "sendMessage", "client") is False  # forwarded to main
    assert serves_locally(reader, "GET", "getEvent", "federation") is None  # not mounted
    assert serves_locally(ROLE_SPECS["pusher"], "GET", "sync", "client") is None
    inbound = ROLE_SPECS["federation_inbound"]
    assert serves_locally(inbound, "GET", "backfill", "federation") is True
    assert serves_locally(inbound, "PUT", "sendTransaction", "federation") is False
    assert serves_locally(ROLE_SPECS["main"], "PUT", "sendMessage", "client") is True
    assert set(ROLE_SPECS) == set(ROLES)


@pytest.mark.parametrize(
    ("raw", "role", "job", "runs"),
    [
        ({}, "main", "pusher", True),
        ({"pusher_instances": ["p1"]}, "main", "pusher", False),
        ({"pusher_instances": ["p1"]}, "pusher", "pusher", True),
        ({}, "pusher", "pusher", False),  # not handed to workers: main pushes
        ({"notify_appservices_from_worker": "as1"}, "appservice", "appservice", True),
        ({"notify_appservices_from_worker": "as1"}, "main", "appservice", False),
        ({}, "main", "background", True),
        ({"run_background_tasks_on": "bg1"}, "background", "background", True),
        ({"run_background_tasks_on": "bg1"}, "main", "background", False),
        ({}, "main", "federation_sender", True),
        ({"federation_sender_instances": ["fs1"]}, "main", "federation_sender", False),
        ({"federation_sender_instances": ["fs1"]}, "federation_sender", "federation_sender", True),
    ],
)
def test_which_process_runs_a_job(raw: dict[str, Any], role: str, job: str, runs: bool) -> None:
    from types import SimpleNamespace

    from homeserver.container import Services

    process = SimpleNamespace(config=load(**raw), role=role)
    assert Services.runs(process, job) is runs  # type: ignore[arg-type]


def test_background_job_kinds() -> None:
    """With run_background_tasks_on the background worker runs the jobs that send no events
    (retention purges) and main every other kind; without it main runs all."""
    from homeserver.container import BACKGROUND_JOB_KINDS
    from homeserver.jobs.runner import JobRunner
    from homeserver.services.retention import RETENTION_PURGE

    assert BACKGROUND_JOB_KINDS == {RETENTION_PURGE}
    alone = JobRunner(None, None)  # type: ignore[arg-type]
    main = JobRunner(None, None, excluded_kinds=BACKGROUND_JOB_KINDS)  # type: ignore[arg-type]
    background = JobRunner(None, None, kinds=BACKGROUND_JOB_KINDS)  # type: ignore[arg-type]
    reader = JobRunner(None, None, enabled=False, kinds=BACKGROUND_JOB_KINDS)  # type: ignore[arg-type]
    assert alone.runs(RETENTION_PURGE) and alone.runs("broadcast")
    assert not main.runs(RETENTION_PURGE) and main.runs("broadcast")
    assert background.runs(RETENTION_PURGE) and not background.runs("broadcast")
    assert not reader.runs(RETENTION_PURGE)
