"""Run a reference Synapse on loopback, for the compat tests and side-by-side benchmarks.

Stdlib only, usable as a script or a module::

    python bench/synapse_ref.py install
    python bench/synapse_ref.py start --db sqlite --port 18008 --dir /tmp/synapse-ref
    python bench/synapse_ref.py status --dir /tmp/synapse-ref
    python bench/synapse_ref.py restart --dir /tmp/synapse-ref
    python bench/synapse_ref.py stop --dir /tmp/synapse-ref

``install`` creates ``bench/.synapse-venv`` with the newest ``matrix-synapse`` (with its ``redis``
extra, for workers, and ``psycopg2-binary``) from PyPI. ``start`` writes a ``homeserver.yaml``
(JSON, which is YAML) into ``--dir``, generates a signing key, creates a fresh PostgreSQL database
when asked, starts Synapse in the background, waits for ``/_matrix/client/versions`` and records
the pid, base URL and shared secret in ``--dir/synapse_ref.json``. ``stop``
terminates it and drops the database.

The generated config keeps Synapse off the network: it listens on 127.0.0.1 only, has no trusted
key servers, an empty federation whitelist, no stats reporting and no URL previews; every rate
limit is set so high that it never triggers.

From Python::

    from bench.synapse_ref import start, stop
    inst = start(db="postgres", port=18008, data_dir="/tmp/synapse-ref")
    ...  # inst.base_url, inst.pid, inst.shared_secret
    restart("/tmp/synapse-ref")  # same config and database: what survives a restart
    stop("/tmp/synapse-ref")
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH_DIR / ".synapse-venv"
STATE_FILE = "synapse_ref.json"
PID_FILE = "synapse.pid"
LOG_FILE = "homeserver.log"

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"

# Big enough that no test or benchmark is ever rate limited.
_NO_LIMIT = {"per_second": 1_000_000, "burst_count": 1_000_000}


@dataclasses.dataclass(frozen=True)
class SynapseInstance:
    base_url: str
    pid: int
    data_dir: str
    shared_secret: str
    db: str
    db_name: str | None
    server_name: str
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SynapseRefError(RuntimeError):
    pass


# --------------------------------------------------------------------------- install


def venv_python(venv: Path = DEFAULT_VENV) -> Path:
    return venv / "bin" / "python"


def _installed_version(venv: Path) -> str | None:
    py = venv_python(venv)
    if not py.exists():
        return None
    proc = subprocess.run(
        [
            str(py),
            "-c",
            # txredisapi and hiredis: the `redis` extra, for worker deployments
            "import importlib.metadata as m, psycopg2, txredisapi, hiredis;"
            " print(m.version('matrix-synapse'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def install(venv: Path = DEFAULT_VENV, upgrade: bool = False) -> str:
    """Create the Synapse venv if needed; return the installed Synapse version. Idempotent."""
    version = _installed_version(venv)
    if version and not upgrade:
        return version
    if not venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True
        )
    cmd = [str(venv_python(venv)), "-m", "pip", "install", "--quiet"]
    if upgrade:
        cmd.append("--upgrade")
    subprocess.run([*cmd, "matrix-synapse[redis]", "psycopg2-binary"], check=True)
    version = _installed_version(venv)
    if not version:
        raise SynapseRefError(f"matrix-synapse did not install into {venv}")
    return version


# --------------------------------------------------------------------------- postgres


def _pg(sql: str, venv: Path) -> None:
    """Run one autocommit statement against the maintenance database via the venv's psycopg2."""
    script = (
        "import sys, psycopg2\n"
        f"conn = psycopg2.connect(host={PG_HOST!r}, port={PG_PORT}, user={PG_USER!r}, dbname='postgres',"
        " connect_timeout=5)\n"
        "conn.autocommit = True\n"
        "conn.cursor().execute(sys.argv[1])\n"
        "conn.close()\n"
    )
    proc = subprocess.run(
        [str(venv_python(venv)), "-c", script, sql], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SynapseRefError(f"PostgreSQL statement failed: {sql}\n{proc.stderr.strip()}")


def create_database(name: str, venv: Path = DEFAULT_VENV) -> None:
    """Create a fresh database the way Synapse requires it (UTF8, C collation, template0)."""
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', venv)
    _pg(
        f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' "
        f"TEMPLATE template0 OWNER {PG_USER}",
        venv,
    )


def drop_database(name: str, venv: Path = DEFAULT_VENV) -> None:
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', venv)


# --------------------------------------------------------------------------- config


def _signing_key_line() -> str:
    # Synapse's signing key file: "<alg> <version> <unpadded base64 of the 32-byte ed25519 seed>".
    seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    return f"ed25519 a_{secrets.token_hex(2)} {seed}\n"


def build_config(
    *,
    data_dir: Path,
    port: int,
    db: str,
    db_name: str | None,
    shared_secret: str,
    server_name: str = "localhost",
    bcrypt_rounds: int = 12,
) -> dict[str, Any]:
    if db == "sqlite":
        database: dict[str, Any] = {"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}}
    elif db == "postgres":
        database = {
            "name": "psycopg2",
            "args": {
                "user": PG_USER,
                "host": PG_HOST,
                "port": PG_PORT,
                "database": db_name,
                "cp_min": 5,
                "cp_max": 10,
            },
        }
    else:
        raise SynapseRefError(f"unknown db {db!r}: use sqlite or postgres")
    return {
        "server_name": server_name,
        "pid_file": str(data_dir / PID_FILE),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client", "federation", "media"], "compress": False}],
            }
        ],
        "database": database,
        "media_store_path": str(data_dir / "media_store"),
        "signing_key_path": str(data_dir / "signing.key"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_hex(32),
        "form_secret": secrets.token_hex(32),
        "enable_registration": False,
        "bcrypt_rounds": bcrypt_rounds,
        "report_stats": False,
        "enable_metrics": False,
        "url_preview_enabled": False,
        # No network: no notary servers, no federation peers, no phone-home.
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "allow_public_rooms_over_federation": False,
        # Let any user publish rooms to the directory (Synapse's default allows admins only).
        "room_list_publication_rules": [{"action": "allow"}],
        # Rate limits effectively off.
        "rc_message": _NO_LIMIT,
        "rc_registration": _NO_LIMIT,
        "rc_registration_token_validity": _NO_LIMIT,
        "rc_login": {"address": _NO_LIMIT, "account": _NO_LIMIT, "failed_attempts": _NO_LIMIT},
        "rc_admin_redaction": _NO_LIMIT,
        "rc_joins": {"local": _NO_LIMIT, "remote": _NO_LIMIT},
        "rc_joins_per_room": _NO_LIMIT,
        "rc_3pid_validation": _NO_LIMIT,
        "rc_invites": {"per_room": _NO_LIMIT, "per_user": _NO_LIMIT, "per_issuer": _NO_LIMIT},
        "rc_third_party_invite": _NO_LIMIT,
        "rc_key_requests": _NO_LIMIT,
        "rc_media_create": _NO_LIMIT,
        "rc_presence": {"per_user": _NO_LIMIT},
        "rc_delayed_event_mgmt": _NO_LIMIT,
        "rc_room_creation": _NO_LIMIT,
        "rc_reports": _NO_LIMIT,
        "rc_user_directory": _NO_LIMIT,
        "rc_profile": _NO_LIMIT,
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": 1_000_000,
            "sleep_delay": 0,
            "reject_limit": 1_000_000,
            "concurrent": 1_000_000,
        },
    }


# --------------------------------------------------------------------------- start / stop


def _versions_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/_matrix/client/versions", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def read_state(data_dir: str | os.PathLike[str]) -> SynapseInstance | None:
    path = Path(data_dir) / STATE_FILE
    if not path.exists():
        return None
    return SynapseInstance(**json.loads(path.read_text()))


def start(
    db: str = "sqlite",
    port: int = 18008,
    data_dir: str | os.PathLike[str] = "/tmp/synapse-ref",
    *,
    shared_secret: str | None = None,
    db_name: str | None = None,
    bcrypt_rounds: int = 12,
    extra_config: dict[str, Any] | None = None,
    venv: Path = DEFAULT_VENV,
    timeout: float = 180.0,
) -> SynapseInstance:
    """Start Synapse in the background on 127.0.0.1:port and wait until it answers."""
    ddir = Path(data_dir).resolve()
    ddir.mkdir(parents=True, exist_ok=True)
    existing = read_state(ddir)
    if existing and _pid_alive(existing.pid):
        raise SynapseRefError(f"Synapse already running from {ddir} (pid {existing.pid}); stop it first")
    version = install(venv)
    base_url = f"http://127.0.0.1:{port}"
    if _versions_ready(base_url):
        raise SynapseRefError(f"something already answers on {base_url}")

    shared_secret = shared_secret or secrets.token_hex(16)
    if db == "postgres":
        db_name = db_name or f"synapse_ref_{port}"
        create_database(db_name, venv)
    else:
        db_name = None
        for leftover in ("homeserver.db", "homeserver.db-wal", "homeserver.db-shm"):
            (ddir / leftover).unlink(missing_ok=True)
    key_path = ddir / "signing.key"
    if not key_path.exists():
        key_path.write_text(_signing_key_line())
    config = build_config(
        data_dir=ddir,
        port=port,
        db=db,
        db_name=db_name,
        shared_secret=shared_secret,
        bcrypt_rounds=bcrypt_rounds,
    )
    config.update(extra_config or {})
    config_path = ddir / "homeserver.yaml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML

    inst = SynapseInstance(
        base_url=base_url,
        pid=0,
        data_dir=str(ddir),
        shared_secret=shared_secret,
        db=db,
        db_name=db_name,
        server_name=config["server_name"],
        version=version,
    )
    return _spawn(inst, venv, timeout)


def restart(
    data_dir: str | os.PathLike[str], *, venv: Path = DEFAULT_VENV, timeout: float = 180.0
) -> SynapseInstance:
    """Stop the Synapse started from data_dir and start it again on the same config and database
    (nothing is wiped: for tests of what survives a restart)."""
    ddir = Path(data_dir).resolve()
    inst = read_state(ddir)
    if inst is None:
        raise SynapseRefError(f"no Synapse was started from {ddir}")
    stop(ddir, drop_db=False, venv=venv)
    return _spawn(inst, venv, timeout)


def _spawn(inst: SynapseInstance, venv: Path, timeout: float) -> SynapseInstance:
    """Run Synapse on data_dir's homeserver.yaml in the background and wait until it answers."""
    ddir = Path(inst.data_dir)
    config_path = ddir / "homeserver.yaml"
    log_path = ddir / LOG_FILE
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNAPSE_", "http_", "https_"))}
    env.pop("HTTP_PROXY", None)
    env.pop("HTTPS_PROXY", None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(venv_python(venv)), "-m", "synapse.app.homeserver", "--config-path", str(config_path)],
            cwd=ddir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    inst = dataclasses.replace(inst, pid=proc.pid)
    (ddir / PID_FILE).write_text(f"{proc.pid}\n")
    (ddir / STATE_FILE).write_text(json.dumps(inst.to_json(), indent=2))

    deadline = time.monotonic() + timeout
    while not _versions_ready(inst.base_url):  # readiness poll
        if proc.poll() is not None:
            _cleanup_files(ddir)
            if inst.db_name:
                drop_database(inst.db_name, venv)
            raise SynapseRefError(f"Synapse exited with {proc.returncode}:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            stop(ddir, venv=venv)
            raise SynapseRefError(f"Synapse not ready after {timeout:.0f}s:\n{_tail(log_path)}")
        time.sleep(0.2)
    return inst


def _cleanup_files(ddir: Path) -> None:
    for name in (PID_FILE, STATE_FILE):
        (ddir / name).unlink(missing_ok=True)


def stop(
    data_dir: str | os.PathLike[str],
    *,
    drop_db: bool = True,
    venv: Path = DEFAULT_VENV,
    timeout: float = 30.0,
) -> bool:
    """Stop the Synapse started from data_dir (SIGTERM, then SIGKILL). Returns whether one was running."""
    ddir = Path(data_dir).resolve()
    inst = read_state(ddir)
    pid: int | None = inst.pid if inst else None
    if pid is None and (ddir / PID_FILE).exists():
        with contextlib.suppress(ValueError):
            pid = int((ddir / PID_FILE).read_text().strip())
    was_running = bool(pid and _pid_alive(pid))
    if pid and was_running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pid)
    if inst and inst.db_name and drop_db:
        drop_database(inst.db_name, venv)
    _cleanup_files(ddir)
    return was_running


def _reap(pid: int) -> None:
    # When the caller is our parent process, collect the zombie so _pid_alive turns false.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


# --------------------------------------------------------------------------- CLI


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SynapseRefError(f"--set expects KEY=JSON, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value  # bare strings need no JSON quoting
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help="create bench/.synapse-venv with matrix-synapse")
    p_install.add_argument("--upgrade", action="store_true")
    p_start = sub.add_parser("start", help="start Synapse in the background")
    p_start.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p_start.add_argument("--port", type=int, default=18008)
    p_start.add_argument("--dir", required=True)
    p_start.add_argument("--shared-secret")
    p_start.add_argument("--db-name")
    p_start.add_argument("--bcrypt-rounds", type=int, default=12)
    p_start.add_argument("--timeout", type=float, default=180.0)
    p_start.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a top-level homeserver.yaml key, e.g. --set enable_registration=true",
    )
    p_stop = sub.add_parser("stop", help="stop Synapse and drop its database")
    p_stop.add_argument("--dir", required=True)
    p_stop.add_argument("--keep-db", action="store_true")
    p_restart = sub.add_parser("restart", help="stop Synapse and start it again on the same data")
    p_restart.add_argument("--dir", required=True)
    p_status = sub.add_parser("status", help="print the running instance as JSON")
    p_status.add_argument("--dir", required=True)
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            print(f"matrix-synapse {install(upgrade=args.upgrade)} in {DEFAULT_VENV}")
        elif args.command == "start":
            inst = start(
                db=args.db,
                port=args.port,
                data_dir=args.dir,
                shared_secret=args.shared_secret,
                db_name=args.db_name,
                bcrypt_rounds=args.bcrypt_rounds,
                extra_config=_parse_sets(args.set),
                timeout=args.timeout,
            )
            print(json.dumps(inst.to_json(), indent=2))
        elif args.command == "stop":
            running = stop(args.dir, drop_db=not args.keep_db)
            print("stopped" if running else "not running")
        elif args.command == "restart":
            print(json.dumps(restart(args.dir).to_json(), indent=2))
        elif args.command == "status":
            state = read_state(args.dir)
            if state is None or not _pid_alive(state.pid):
                print("not running")
                return 1
            print(json.dumps(state.to_json(), indent=2))
    except SynapseRefError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
