"""Command line: run | migrate | generate-config | register-user | backup | restore | port-db."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import getpass
import logging
import os
import secrets
import signal
import ssl
import sys
import tempfile
from typing import Any

from aiohttp import web

from homeserver import __version__

logger = logging.getLogger("homeserver")

SHUTDOWN_GRACE_SECONDS = 10.0


def _load(args: argparse.Namespace) -> Any:
    from homeserver.appservice.loading import load_registrations
    from homeserver.config import ConfigError, load_config
    from homeserver.config.workers import check_worker_setup, with_role

    try:
        config = load_config(args.config)
        worker = getattr(args, "worker", None)
        if worker is not None:  # `run --worker ROLE` wins over worker_app in the file
            config = dataclasses.replace(config, workers=with_role(config.workers, worker))
        check_worker_setup(config.workers, config.redis.enabled, config.database.engine)
        # Registration files are checked now so that a bad one stops the server with exit 2.
        load_registrations(config.app_service_config_files, config.server_name)
        return config
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional: the stdlib loop works, only slower
        return
    uvloop.install()


# -- run --------------------------------------------------------------------------------------------


class StartupError(RuntimeError):
    """A failure an operator fixes (port taken, bad log_config ...): one line, no traceback."""


def _fatal_message(exc: BaseException) -> str | None:
    """The one line an operator needs for a failure outside the server's control, or None for
    a bug (which keeps its traceback)."""
    from homeserver.core.errors import DatabaseUnavailableError
    from homeserver.replication.redis_link import ReplicationUnavailableError
    from homeserver.storage.migrations import SchemaError

    if isinstance(exc, DatabaseUnavailableError):
        return exc.detail
    if isinstance(exc, ReplicationUnavailableError):
        return str(exc)
    if isinstance(exc, StartupError | SchemaError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:  # data dir, signing key, media store
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return None


# Exit codes: 1 = may pass by itself (database unreachable, port still taken): a supervisor may
# retry; 2 = needs the operator (bad config, a schema this version cannot run on): retrying is
# pointless (the systemd unit in docker/ sets RestartPreventExitStatus=2).
EXIT_RETRYABLE = 1
EXIT_NEEDS_OPERATOR = 2


def _run_or_exit(main: Any) -> int:
    """asyncio.run(main), turning operator-fixable failures into one line and an exit code."""
    from homeserver.storage.migrations import SchemaError

    try:
        result: int = asyncio.run(main)
        return result
    except Exception as exc:
        message = _fatal_message(exc)
        if message is None:
            raise
        logger.debug("startup failed", exc_info=True)
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_NEEDS_OPERATOR if isinstance(exc, SchemaError) else EXIT_RETRYABLE


def _server_ssl_context(config: Any) -> ssl.SSLContext:
    """The context of `tls: true` listeners: Synapse's tls_certificate_path (leaf first, then the
    chain) and tls_private_key_path, TLS 1.2 or later."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        fed = config.federation
        context.load_cert_chain(fed.tls_certificate_path, fed.tls_private_key_path)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"tls_certificate_path / tls_private_key_path: cannot load: {exc}") from exc
    return context


async def _start_site(
    runner: web.AppRunner, address: str, listener: Any, ssl_context: ssl.SSLContext | None = None
) -> bool:
    """Bind one address; False when it is already covered by another bind (see below)."""
    site = web.TCPSite(
        runner, address, listener.port, reuse_address=True, ssl_context=ssl_context if listener.tls else None
    )
    try:
        await site.start()
    except OSError as exc:
        # Synapse's default ["::", "0.0.0.0"]: on Linux "::" already covers IPv4.
        covered = address == "0.0.0.0" and "::" in listener.bind_addresses
        if exc.errno == errno.EADDRINUSE and covered:
            return False
        shown = f"[{address}]" if ":" in address else address
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(f"cannot listen on {shown}:{listener.port}: {reason}") from exc
    return True


def _check_writable(key: str, directory: str) -> None:
    """Create `directory` and write a file in it, so a wrong path or owner stops the start with
    one line instead of failing the first upload (or key generation) much later."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise StartupError(f"{key}: {directory} is not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and exc.filename != directory else ""
        raise StartupError(f"{key}: cannot write to {directory}: {reason}{where}") from exc


def _preflight(config: Any) -> None:
    if not os.path.exists(config.signing_key_path):  # generated on first start
        _check_writable("signing_key_path", os.path.dirname(os.path.abspath(config.signing_key_path)))
    if config.enable_media_repo:
        _check_writable("media_store_path", config.media_store_path)


async def _serve(config: Any, embedded: bool) -> int:
    from homeserver.app import create_app, served_resources
    from homeserver.container import Services
    from homeserver.http.access_log import access_log_kwargs
    from homeserver.http.server import MatrixAppRunner
    from homeserver.ops.gc_policy import GcPolicy

    await asyncio.to_thread(_preflight, config)
    services = await Services.create(config)
    gc_policy = GcPolicy()
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        tls_context = _server_ssl_context(config) if any(lst.tls for lst in config.listeners) else None
        for listener in config.listeners:
            resources = ("metrics",) if listener.type == "metrics" else listener.resources
            app = create_app(services, resources, listener)
            runner: web.AppRunner = MatrixAppRunner(
                app, shutdown_timeout=SHUTDOWN_GRACE_SECONDS, **access_log_kwargs(listener.port)
            )
            await runner.setup()
            runners.append(runner)
            served = served_resources(config, resources)
            not_served = [r for r in resources if r not in served]
            for address in listener.bind_addresses:
                if not await _start_site(runner, address, listener, tls_context):
                    continue
                logger.info(
                    "listening on %s://%s:%d (%s)%s",
                    "https" if listener.tls else "http",
                    f"[{address}]" if ":" in address else address,
                    listener.port,
                    ", ".join(served),
                    f"; listed but not served: {', '.join(not_served)}" if not_served else "",
                )
        if embedded:
            first = config.listeners[0]
            base = f"http://{first.bind_addresses[0]}:{first.port}"
            print(
                f"\nHomeserver '{config.server_name}' is running on {base} "
                f"(SQLite in {config.data_dir}).\n"
                "Create an admin user in another terminal:\n"
                "    homeserver register-user --admin alice\n"
                f"Then sign in with any Matrix client (Element, nio...) using homeserver URL {base}\n",
                flush=True,
            )
        gc_policy.start()
        await stop.wait()
        logger.info("shutting down: answering waiting syncs, finishing in-flight requests")
    finally:
        gc_policy.stop()
        # Parked /sync long-polls would otherwise hold the shutdown for their whole timeout.
        services.notifier.close()
        for runner in runners:
            await runner.cleanup()
        await services.stop()
        logger.info("stopped cleanly")
    return 0


def _setup_logging(config: Any) -> None:
    from homeserver.config import ConfigError
    from homeserver.config.logsetup import load_log_config
    from homeserver.http.logcontext import apply_log_config, setup_logging

    if not config.log_config:
        setup_logging(config.log_level)
        return
    try:
        apply_log_config(load_log_config(config.log_config))
    except (ConfigError, ValueError, TypeError, AttributeError, ImportError) as exc:
        # dictConfig wraps a handler that cannot be built (unwritable file...) in ValueError.
        cause = exc.__cause__ or exc.__context__
        detail = f"{exc}: {cause}" if cause and str(cause) not in str(exc) else str(exc)
        print(f"configuration error: log_config {config.log_config}: {detail}", file=sys.stderr)
        raise SystemExit(2) from exc


def raise_file_limit(soft_file_limit: int) -> None:
    """Set the open-file soft limit (Synapse's `soft_file_limit`; 0 = up to the hard limit).

    Every client connection, long-polling /sync and database file needs a descriptor; the usual
    default soft limit of 1024 runs out with a few hundred users.
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = soft_file_limit or hard
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted == resource.RLIM_INFINITY:  # Linux refuses an infinite RLIMIT_NOFILE
        wanted = 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        logger.warning("could not set the open-file limit to %d: %s", wanted, exc)
        return
    logger.info("open-file limit: %d (was %d, hard limit %d)", wanted, soft, hard)


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    _setup_logging(config)
    raise_file_limit(config.soft_file_limit)
    if config.unknown_keys:
        logger.warning(
            "ignoring configuration keys this server does not implement: %s",
            ", ".join(config.unknown_keys),
        )
    if config.pid_file:
        try:
            with open(config.pid_file, "w") as fh:
                fh.write(str(os.getpid()))
        except OSError as exc:
            print(f"error: cannot write pid_file {config.pid_file}: {exc.strerror}", file=sys.stderr)
            return 1
    _install_uvloop()
    try:
        return _run_or_exit(_serve(config, embedded=args.config is None))
    finally:
        if config.pid_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.pid_file)


# -- migrate ----------------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from homeserver.storage.engine import open_database
    from homeserver.storage.migrations import migrate

    config = _load(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    async def run() -> int:
        db = await open_database(config.database)
        try:
            applied = await migrate(db)
        finally:
            await db.close()
        if applied:
            print(f"applied {len(applied)} migration(s), now at {applied[-1].label}")
        else:
            print("schema is up to date")
        return 0

    return _run_or_exit(run())


# -- generate-config --------------------------------------------------------------------------------


def cmd_generate_config(args: argparse.Namespace) -> int:
    from homeserver.config import generate_config_yaml

    # As Synapse's generator: a fresh secret (so `register-user` and the admin registration API
    # work at once) and absolute paths (the file keeps working whatever the service's cwd).
    text = generate_config_yaml(
        server_name=args.server_name,
        data_dir=os.path.abspath(args.data_dir),
        registration_shared_secret=secrets.token_urlsafe(32),
    )
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        if os.path.exists(args.output) and not args.force:
            print(f"{args.output} exists; pass --force to overwrite", file=sys.stderr)
            return 1
        # It holds a secret: readable by its owner only.
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        print(f"wrote {args.output}")
    return 0


# -- register-user ----------------------------------------------------------------------------------


def cmd_register_user(args: argparse.Namespace) -> int:
    from homeserver.container import Services
    from homeserver.core.errors import MatrixError

    config = _load(args)
    password = args.password
    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            print("passwords do not match", file=sys.stderr)
            return 1
    if not password:
        print("a password is required", file=sys.stderr)
        return 1

    async def run() -> int:
        services = await Services.create(config)
        try:
            user_id, _ = await services.accounts.register(
                args.username.lower(), password, admin=args.admin, inhibit_login=True
            )
        except MatrixError as err:
            print(f"error: {err.error} ({err.errcode})", file=sys.stderr)
            return 1
        finally:
            await services.stop()
        print(f"registered {user_id}{' (admin)' if args.admin else ''}")
        return 0

    return _run_or_exit(run())


# -- backup / restore / port-db ---------------------------------------------------------------------


def _progress(line: str) -> None:
    print(line, flush=True)


def cmd_backup(args: argparse.Namespace) -> int:
    from homeserver.ops.backup import OpsError, backup

    config = _load(args)
    try:
        backup(config, args.to, progress=_progress)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a directory we cannot create or write, a full disk
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from homeserver.ops.backup import OpsError, restore

    config = _load(args)
    try:
        restore(config, args.source, force=args.force, progress=_progress)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a directory we cannot create or write, a full disk
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    return 0


def cmd_port_db(args: argparse.Namespace) -> int:
    from homeserver.config import ConfigError
    from homeserver.config.database import database_url_to_raw, read_database
    from homeserver.config.parsing import Section
    from homeserver.storage.port_db import PortError, port

    config = _load(args)
    sqlite_path = args.sqlite_database or (config.database.sqlite_path if config.database.is_sqlite else None)
    if not sqlite_path:
        print("error: the config does not use SQLite; pass --sqlite-database FILE", file=sys.stderr)
        return 2
    try:
        raw = {"database": database_url_to_raw(args.postgres, "--postgres")}
        target = read_database(Section(raw, ""), config.data_dir)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if target.engine != "postgres":
        print("error: --postgres must be a postgresql:// URL", file=sys.stderr)
        return 2

    async def run() -> int:
        try:
            report = await port(sqlite_path, target, batch_size=args.batch_size, progress=_progress)
        except PortError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        width = max(len(c.table) for c in report.counts)
        for count in report.counts:
            mark = "ok" if count.ok else "MISMATCH"
            print(f"  {count.table:<{width}}  sqlite {count.source:>8}  postgres {count.target:>8}  {mark}")
        if report.nul_characters_removed:
            removed = report.nul_characters_removed
            print(f"note: {removed} NUL character(s) removed from text (PostgreSQL refuses them)")
        if not report.ok:
            print(
                "error: row counts differ (was the server writing to SQLite?); run port-db again",
                file=sys.stderr,
            )
            return 1
        print(
            f"done: {report.rows_copied} rows copied; every table's row count matches. Point the config's "
            "`database` at PostgreSQL and start the server."
        )
        return 0

    return _run_or_exit(run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeserver", description="A fast, light Matrix homeserver")
    parser.add_argument("--version", action="version", version=f"homeserver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="homeserver.yaml (default: embedded SQLite in ./data)")

    run = sub.add_parser("run", help="run the homeserver in the foreground")
    with_config(run)
    run.add_argument(
        "--worker",
        metavar="ROLE",
        help="run as this role of a scale-out deployment (main, client_reader, pusher...; docs/scale-out.md)",
    )
    run.set_defaults(func=cmd_run)

    mig = sub.add_parser("migrate", help="apply database migrations and exit")
    with_config(mig)
    mig.set_defaults(func=cmd_migrate)

    gen = sub.add_parser("generate-config", help="print a commented homeserver.yaml with every key")
    gen.add_argument("--server-name", default="localhost")
    gen.add_argument("--data-dir", default="./data", help="made absolute in the output")
    gen.add_argument("-o", "--output", help="file to write (default: stdout)")
    gen.add_argument("--force", action="store_true", help="overwrite an existing file")
    gen.set_defaults(func=cmd_generate_config)

    reg = sub.add_parser("register-user", help="create a user account from the shell")
    with_config(reg)
    reg.add_argument("username", help="localpart, e.g. alice")
    reg.add_argument("-p", "--password", help="password (prompted when omitted)")
    reg.add_argument("-a", "--admin", action="store_true", help="make the user a server admin")
    reg.set_defaults(func=cmd_register_user)

    bak = sub.add_parser("backup", help="back up the database, media store and signing key while serving")
    with_config(bak)
    bak.add_argument("--to", required=True, help="a new (or empty) directory")
    bak.set_defaults(func=cmd_backup)

    res = sub.add_parser("restore", help="restore a `backup` directory (server stopped)")
    with_config(res)
    res.add_argument("--from", dest="source", required=True, help="the backup directory")
    res.add_argument(
        "--force", action="store_true", help="replace an existing database/signing key (kept aside)"
    )
    res.set_defaults(func=cmd_restore)

    port = sub.add_parser("port-db", help="copy the SQLite database into PostgreSQL (resumable)")
    with_config(port)
    port.add_argument(
        "--postgres", required=True, help="postgresql://user:pass@host:5432/db (an empty database)"
    )
    port.add_argument("--sqlite-database", help="the SQLite file (default: the config's database)")
    port.add_argument("--batch-size", type=int, default=5000, help="rows per transaction (default 5000)")
    port.set_defaults(func=cmd_port_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
