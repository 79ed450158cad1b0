"""The deployments the worker benchmarks compare, started as plain processes on this machine.

- ours, one process: `homeserver run` on a fresh PostgreSQL database, no Redis.
- ours, workers: tests/scaleout's topology (main + N client_readers + a pusher on PostgreSQL and a
  private redis-server).
- Synapse, one process: bench/synapse_ref.py's configuration on a fresh PostgreSQL database.
- Synapse, workers: the same configuration plus a `replication` listener on main, `instance_map`,
  Redis, and N `synapse.app.generic_worker` client readers and a pusher worker named in
  `pusher_instances`, as Synapse's worker documentation sets them up.

Every deployment has shared-secret registration, bcrypt_rounds 4, rate limits off and presence on
(Synapse's default), and logs at its default level. Each process is named, so its CPU and RSS can be
read from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import synapse_ref
from synapse_compat_tests.launcher import free_port, launch
from tests.scaleout.topology import RedisServer, start_topology

REPO = Path(__file__).resolve().parent.parent
BCRYPT_ROUNDS = 4


@dataclass
class Deployment:
    server: str  # "ours" or "synapse"
    readers: int  # 0: one process doing everything
    main_url: str
    reader_urls: list[str]
    processes: dict[str, int]  # process name -> pid
    shared_secret: str
    db_name: str | None
    version: str
    stop: Callable[[], None] = field(repr=False)

    @property
    def label(self) -> str:
        if not self.readers:
            return f"{self.server}, one process"
        pusher = " + pusher" if "pusher1" in self.processes else ""
        return f"{self.server}, main + {self.readers} readers{pusher}"

    @property
    def main_address(self) -> str:
        return str(urlsplit(self.main_url).netloc)

    @property
    def reader_addresses(self) -> list[str]:
        return [str(urlsplit(u).netloc) for u in self.reader_urls]


def _ours_version() -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return f"ours ({proc.stdout.strip() or 'unknown commit'})"


def start_ours(workdir: Path, readers: int) -> Deployment:
    overrides: dict[str, Any] = {
        "presence": {"enabled": True},
        "enable_registration": True,
        "enable_registration_without_verification": True,
    }
    if readers == 0:
        server = launch("postgres", workdir / "main", overrides=overrides)
        return Deployment(
            "ours",
            0,
            server.base_url,
            [],
            {"main": server.process.pid},
            server.shared_secret,
            server.db_name,
            _ours_version(),
            server.stop,
        )
    topology = start_topology(workdir, readers, pusher=True)
    processes = {"main": topology.main.process.pid} | {w.name: w.process.pid for w in topology.workers}
    return Deployment(
        "ours",
        readers,
        topology.main.base_url,
        [w.url for w in topology.readers],
        processes,
        topology.main.shared_secret,
        topology.main.db_name,
        _ours_version(),
        topology.stop,
    )


# ----------------------------------------------------------------------------------------- Synapse


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class _SynapseProcs:
    workdir: Path
    db_name: str
    redis: RedisServer | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, app: str, configs: list[Path], ready_url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNAPSE_", "http_", "https_"))}
        env.pop("HTTP_PROXY", None)
        env.pop("HTTPS_PROXY", None)
        args = [str(synapse_ref.venv_python()), "-m", app]
        for config in configs:
            args += ["--config-path", str(config)]
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                args,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.procs[name] = proc
        deadline = time.monotonic() + 180
        while not _answers(ready_url):  # readiness poll
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                raise synapse_ref.SynapseRefError(f"Synapse {name} did not start:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        # Workers first, then main: a worker never outlives the process it replicates from.
        for name in [n for n in self.procs if n != "main"] + ["main"]:
            if name in self.procs:
                _terminate(self.procs[name])
        if self.redis is not None:
            self.redis.stop()
        with contextlib.suppress(synapse_ref.SynapseRefError):
            synapse_ref.drop_database(self.db_name)


def synapse_worker_config(name: str, port: int, resources: list[str]) -> dict[str, Any]:
    """A generic_worker's own file (the shared homeserver.yaml is given first)."""
    return {
        "worker_app": "synapse.app.generic_worker",
        "worker_name": name,
        "worker_listeners": [
            {
                "type": "http",
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "resources": [{"names": resources, "compress": False}],
            }
        ],
    }


def start_synapse(workdir: Path, readers: int) -> Deployment:
    version = f"Synapse {synapse_ref.install()}"
    workdir.mkdir(parents=True, exist_ok=True)
    db_name = f"bench_synapse_{secrets.token_hex(4)}"
    synapse_ref.create_database(db_name)
    run = _SynapseProcs(workdir, db_name)
    try:
        shared_secret = secrets.token_hex(16)
        port = free_port()
        config = synapse_ref.build_config(
            data_dir=workdir,
            port=port,
            db="postgres",
            db_name=db_name,
            shared_secret=shared_secret,
            bcrypt_rounds=BCRYPT_ROUNDS,
        )
        config.update(enable_registration=True, enable_registration_without_verification=True)
        if readers:
            run.redis = RedisServer(free_port(), workdir)
            run.redis.start()
            replication_port = free_port()
            config["listeners"].append(
                {
                    "port": replication_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "resources": [{"names": ["replication"]}],
                }
            )
            config["redis"] = {"enabled": True, "host": "127.0.0.1", "port": run.redis.port}
            # Synapse refuses IP literals in blocked ranges: the instance is named by host name.
            config["instance_map"] = {"main": {"host": "localhost", "port": replication_port}}
            config["worker_replication_secret"] = secrets.token_hex(16)
            config["pusher_instances"] = ["pusher1"]
        (workdir / "signing.key").write_text(synapse_ref._signing_key_line())
        shared = workdir / "homeserver.yaml"
        shared.write_text(json.dumps(config, indent=2))  # JSON is YAML
        main_url = f"http://127.0.0.1:{port}"
        run.spawn("main", "synapse.app.homeserver", [shared], f"{main_url}/_matrix/client/versions")
        reader_urls: list[str] = []
        workers = [(f"reader{i + 1}", ["client"]) for i in range(readers)]
        if readers:
            workers.append(("pusher1", ["health"]))
        for name, resources in workers:
            worker_port = free_port()
            path = workdir / f"{name}.yaml"
            path.write_text(json.dumps(synapse_worker_config(name, worker_port, resources), indent=2))
            url = f"http://127.0.0.1:{worker_port}"
            run.spawn(name, "synapse.app.generic_worker", [shared, path], f"{url}/health")
            if "client" in resources:
                reader_urls.append(url)
    except BaseException:
        run.stop()
        raise
    return Deployment(
        "synapse",
        readers,
        main_url,
        reader_urls,
        {name: proc.pid for name, proc in run.procs.items()},
        shared_secret,
        db_name,
        version,
        run.stop,
    )


def start(server: str, workdir: Path, readers: int) -> Deployment:
    if server == "ours":
        return start_ours(workdir, readers)
    if server == "synapse":
        return start_synapse(workdir, readers)
    raise ValueError(f"unknown server {server!r}: ours or synapse")
