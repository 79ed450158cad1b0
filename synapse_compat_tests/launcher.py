"""Start our homeserver as an external process for the compat suite (never imports ``homeserver``).

One server per database backend: a Synapse-style ``homeserver.yaml`` is written into a temp dir
and ``python -m homeserver run --config PATH`` is started; the launcher waits for
``/_matrix/client/versions`` and stops the process (SIGTERM, then SIGKILL) afterwards. For
PostgreSQL a fresh database is created on 127.0.0.1:5432 (user ``postgres``) and dropped again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_DIR = Path(__file__).resolve().parent.parent
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
READY_TIMEOUT = 30.0
_NO_LIMIT = {"per_second": 1_000_000, "burst_count": 1_000_000}


class LaunchError(RuntimeError):
    pass


class PostgresUnavailable(LaunchError):
    pass


@dataclass
class LaunchedServer:
    base_url: str
    shared_secret: str
    backend: str
    workdir: Path
    process: subprocess.Popen[bytes]
    db_name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "stderr.log"

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.process
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self.db_name:
            drop_database(self.db_name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- postgres


async def _pg_execute(*statements: str) -> None:
    import asyncpg  # project dependency; imported lazily so SQLite-only runs never need a server

    try:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise PostgresUnavailable(
            f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} as user {PG_USER!r}: {exc}"
        ) from exc
    try:
        for stmt in statements:
            await conn.execute(stmt)
    finally:
        await conn.close()


def create_database(name: str) -> None:
    asyncio.run(
        _pg_execute(
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0",
        )
    )


def drop_database(name: str) -> None:
    with contextlib.suppress(PostgresUnavailable):
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --------------------------------------------------------------------------- config


SERVER_NOTICES: dict[str, Any] = {
    "system_mxid_localpart": "notices",
    "system_mxid_display_name": "Server Notices",
    "room_name": "Server Notices",
}


def _signing_key_line() -> str:
    seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    return f"ed25519 a_{secrets.token_hex(2)} {seed}\n"


def build_config(
    workdir: Path, port: int, backend: str, shared_secret: str, db_name: str | None
) -> dict[str, Any]:
    data_dir = workdir / "data"
    if backend == "sqlite":
        database: dict[str, Any] = {"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}}
    elif backend == "postgres":
        database = {
            "name": "psycopg2",
            "args": {
                "user": PG_USER,
                "host": PG_HOST,
                "port": PG_PORT,
                "database": db_name,
                "cp_min": 1,
                "cp_max": 10,
            },
        }
    else:
        raise LaunchError(f"unknown backend {backend!r}")
    return {
        "server_name": "localhost",
        "data_dir": str(data_dir),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client", "federation", "media", "metrics"], "compress": False}],
            }
        ],
        "database": database,
        "registration_shared_secret": shared_secret,
        "enable_registration": False,
        "media_store_path": str(data_dir / "media_store"),
        "signing_key_path": str(data_dir / "signing.key"),
        "report_stats": False,
        "trusted_key_servers": [],
        "federation_domain_whitelist": [],
        "url_preview_enabled": False,
        # Let any user publish rooms to the directory (the default rule allows admins only).
        "room_list_publication_rules": [{"action": "allow"}],
        # Server notices (admin API tests); the same block is given to a reference Synapse.
        "server_notices": SERVER_NOTICES,
        # Fast password hashing: the suite registers hundreds of users.
        "bcrypt_rounds": 4,
        "rc_message": _NO_LIMIT,
        "rc_registration": _NO_LIMIT,
        "rc_login": {"address": _NO_LIMIT, "account": _NO_LIMIT, "failed_attempts": _NO_LIMIT},
        "rc_joins": {"local": _NO_LIMIT, "remote": _NO_LIMIT},
        "rc_joins_per_room": _NO_LIMIT,
        "rc_invites": {"per_room": _NO_LIMIT, "per_user": _NO_LIMIT, "per_issuer": _NO_LIMIT},
        "rc_3pid_validation": _NO_LIMIT,
        "rc_key_requests": _NO_LIMIT,
        "rc_media_create": _NO_LIMIT,
        "rc_presence": {"per_user": _NO_LIMIT},
        "rc_room_creation": _NO_LIMIT,
        "rc_reports": _NO_LIMIT,
        "rc_user_directory": _NO_LIMIT,
        "rc_profile": _NO_LIMIT,
        "rc_admin_redaction": _NO_LIMIT,
        "rc_third_party_invite": _NO_LIMIT,
        "rc_delayed_event_mgmt": _NO_LIMIT,
    }


# --------------------------------------------------------------------------- launch


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/_matrix/client/versions", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(nothing)"
    return text[-limit:] or "(empty)"


def launch(
    backend: str,
    workdir: Path,
    timeout: float = READY_TIMEOUT,
    overrides: dict[str, Any] | None = None,
    listener_overrides: dict[str, Any] | None = None,
    extra_listeners: list[dict[str, Any]] | None = None,
) -> LaunchedServer:
    """Start our homeserver on a free loopback port with a fresh database and wait until ready.

    `overrides` replace top-level config keys; `listener_overrides` keys of the one listener
    (e.g. ``x_forwarded``), which keeps its port; `extra_listeners` are added after it (e.g. a
    TLS federation listener).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    shared_secret = secrets.token_hex(16)
    db_name: str | None = None
    if backend == "postgres":
        db_name = f"compat_{os.getpid()}_{secrets.token_hex(4)}"
        create_database(db_name)  # raises PostgresUnavailable
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    config = build_config(workdir, port, backend, shared_secret, db_name)
    config.update(overrides or {})
    config["listeners"][0].update(listener_overrides or {})
    config["listeners"].extend(extra_listeners or [])
    (workdir / "data" / "signing.key").write_text(_signing_key_line())
    config_path = workdir / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    server = LaunchedServer(base_url, shared_secret, backend, workdir, _start(workdir), db_name, config)
    _wait_ready(server, timeout)
    return server


def restart(server: LaunchedServer, timeout: float = READY_TIMEOUT) -> None:
    """Stop the server (SIGTERM) and start it again on the same config, data and ports."""
    proc = server.process
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    server.process = _start(server.workdir, append=True)
    _wait_ready(server, timeout)


def _start(workdir: Path, append: bool = False) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_DIR), env.get("PYTHONPATH")) if p)
    mode = "ab" if append else "wb"
    with open(workdir / "stdout.log", mode) as stdout, open(workdir / "stderr.log", mode) as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "--config", str(workdir / "homeserver.yaml")],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
        )


def _wait_ready(server: LaunchedServer, timeout: float) -> None:
    proc, backend, base_url = server.process, server.backend, server.base_url
    deadline = time.monotonic() + timeout
    while not _ready(base_url):  # readiness poll, the only wait in the suite
        if proc.poll() is not None:
            server.stop()
            raise LaunchError(
                f"homeserver ({backend}) exited with code {proc.returncode} before it was ready.\n"
                f"--- stderr ---\n{_tail(server.stderr_path)}"
            )
        if time.monotonic() > deadline:
            server.stop()
            raise LaunchError(
                f"homeserver ({backend}) did not answer {base_url}/_matrix/client/versions "
                f"within {timeout:.0f}s.\n--- stderr ---\n{_tail(server.stderr_path)}"
            )
        time.sleep(0.1)
