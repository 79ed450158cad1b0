"""main + client_readers + pusher as real processes on PostgreSQL and a test-owned Redis.

The Redis is started by the test (redis-server on a free port) so that a test may restart it;
without `redis-server` or PostgreSQL the tests skip (fail under CI=true).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_compat_tests.launcher import (
    REPO_DIR,
    LaunchedServer,
    LaunchError,
    PostgresUnavailable,
    free_port,
    launch,
)

SECRET = "replication-secret-for-tests"


def require(condition: bool, message: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        require(binary is not None, "redis-server is not installed")
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _redis_ping(self.port), 10, "redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def _redis_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_until(check: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # readiness poll of a started process
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Worker:
    role: str
    name: str
    url: str
    config_path: Path
    process: subprocess.Popen[bytes]
    stderr: Path

    def kill9(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class Topology:
    main: LaunchedServer
    redis: RedisServer
    workdir: Path
    main_replication_port: int
    workers: list[Worker] = field(default_factory=list)

    @property
    def readers(self) -> list[Worker]:
        return [w for w in self.workers if w.role == "client_reader"]

    def worker_config(self, role: str, name: str, port: int, **extra: Any) -> dict[str, Any]:
        # (main's extra listeners, e.g. its federation port, are main's alone)
        config = dict(self.main.config)
        config.update(
            worker_app="synapse.app.generic_worker",
            worker_role=role,
            worker_name=name,
            listeners=[
                {
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "resources": [{"names": ["client", "federation", "media", "metrics"]}],
                }
            ],
        )
        config.update(extra)
        return config

    def start_worker(self, role: str, name: str, *, wait: bool = True, **extra: Any) -> Worker:
        port = free_port()
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(self.worker_config(role, name, port, **extra), sort_keys=False))
        stderr = self.workdir / f"{name}.stderr.log"
        env = dict(os.environ, PYTHONPATH=str(REPO_DIR))
        with open(stderr, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "homeserver", "run", "--config", str(path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        worker = Worker(role, name, f"http://127.0.0.1:{port}", path, proc, stderr)
        if wait:
            deadline = time.monotonic() + 60
            while not _ready(worker.url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    worker.stop()
                    raise AssertionError(f"worker {name} did not start:\n{stderr.read_text()[-4000:]}")
                time.sleep(0.1)
            self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.main.stop()
        self.redis.stop()


def start_topology(
    workdir: Path,
    readers: int = 2,
    pusher: bool = True,
    *,
    database: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    extra_listeners: list[dict[str, Any]] | None = None,
    main_listener: dict[str, Any] | None = None,
) -> Topology:
    """`database`: a `database:` block (a throwaway cluster) instead of a fresh database on the
    shared server; `overrides`/`extra_listeners`/`main_listener` as launcher.launch's."""
    redis = RedisServer(free_port(), workdir)
    redis.start()
    replication_port = free_port()
    settings = {
        "redis": {"enabled": True, "host": "127.0.0.1", "port": redis.port},
        "worker_replication_secret": SECRET,
        "instance_map": {"main": {"host": "127.0.0.1", "port": replication_port}},
        "pusher_instances": ["pusher1"] if pusher else [],
        "presence": {"enabled": True},
        "enable_registration": True,
        "ip_range_whitelist": ["127.0.0.0/8"],  # the test push gateway
        "enable_registration_without_verification": True,
        **({"database": database} if database is not None else {}),
        **(overrides or {}),
    }
    replication_listener = {
        "port": replication_port,
        "bind_addresses": ["127.0.0.1"],
        "type": "http",
        "tls": False,
        "resources": [{"names": ["replication", "client"]}],
    }
    try:
        main = launch(
            # with `database` given the launcher creates none ("sqlite" only skips that step)
            "postgres" if database is None else "sqlite",
            workdir / "main",
            overrides=settings,
            listener_overrides=main_listener,
            extra_listeners=[replication_listener, *(extra_listeners or [])],
        )
    except PostgresUnavailable as exc:
        redis.stop()
        require(False, str(exc))
        raise
    except LaunchError:
        redis.stop()
        raise
    topology = Topology(main, redis, workdir, replication_port)
    try:
        for i in range(readers):
            topology.start_worker("client_reader", f"reader{i + 1}")
        if pusher:
            topology.start_worker("pusher", "pusher1")
    except BaseException:
        topology.stop()
        raise
    return topology
