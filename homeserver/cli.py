"""Command line: run | migrate | generate-config | register-user."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import getpass
import logging
import os
import signal
import sys
from typing import Any

from aiohttp import web

from homeserver import __version__

logger = logging.getLogger("homeserver")

SHUTDOWN_GRACE_SECONDS = 10.0


def _load(args: argparse.Namespace) -> Any:
    from homeserver.config import ConfigError, load_config

    try:
        return load_config(args.config)
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


async def _serve(config: Any, embedded: bool) -> None:
    from homeserver.app import create_app
    from homeserver.container import Services
    from homeserver.http.protocol import MatrixAppRunner

    services = await Services.create(config)
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for listener in config.listeners:
            resources = ("metrics",) if listener.type == "metrics" else listener.resources
            app = create_app(services, resources)
            runner: web.AppRunner = MatrixAppRunner(
                app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS
            )
            await runner.setup()
            runners.append(runner)
            for address in listener.bind_addresses:
                site = web.TCPSite(runner, address, listener.port, reuse_address=True)
                try:
                    await site.start()
                except OSError as exc:
                    # Synapse's default ["::", "0.0.0.0"]: on Linux "::" already covers IPv4.
                    covered = address == "0.0.0.0" and "::" in listener.bind_addresses
                    if exc.errno == errno.EADDRINUSE and covered:
                        continue
                    raise
                logger.info(
                    "listening on http://%s:%d (%s)",
                    f"[{address}]" if ":" in address else address,
                    listener.port,
                    ", ".join(resources),
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
        await stop.wait()
        logger.info("shutting down: no new requests, finishing in-flight ones")
    finally:
        for runner in runners:
            await runner.cleanup()
        await services.stop()
        logger.info("stopped cleanly")


def cmd_run(args: argparse.Namespace) -> int:
    from homeserver.http.logcontext import setup_logging

    config = _load(args)
    setup_logging(config.log_level)
    if config.unknown_keys:
        logger.warning(
            "ignoring configuration keys this server does not implement: %s",
            ", ".join(config.unknown_keys),
        )
    if config.pid_file:
        with open(config.pid_file, "w") as fh:
            fh.write(str(os.getpid()))
    _install_uvloop()
    try:
        asyncio.run(_serve(config, embedded=args.config is None))
    finally:
        if config.pid_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.pid_file)
    return 0


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
        print(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")
        return 0

    return asyncio.run(run())


# -- generate-config --------------------------------------------------------------------------------


def cmd_generate_config(args: argparse.Namespace) -> int:
    from homeserver.config import generate_config_yaml

    text = generate_config_yaml(server_name=args.server_name, data_dir=args.data_dir)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        if os.path.exists(args.output) and not args.force:
            print(f"{args.output} exists; pass --force to overwrite", file=sys.stderr)
            return 1
        with open(args.output, "w") as fh:
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

    return asyncio.run(run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeserver", description="A fast, light Matrix homeserver")
    parser.add_argument("--version", action="version", version=f"homeserver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="homeserver.yaml (default: embedded SQLite in ./data)")

    run = sub.add_parser("run", help="run the homeserver in the foreground")
    with_config(run)
    run.set_defaults(func=cmd_run)

    mig = sub.add_parser("migrate", help="apply database migrations and exit")
    with_config(mig)
    mig.set_defaults(func=cmd_migrate)

    gen = sub.add_parser("generate-config", help="print a commented homeserver.yaml with every key")
    gen.add_argument("--server-name", default="localhost")
    gen.add_argument("--data-dir", default="./data")
    gen.add_argument("-o", "--output", help="file to write (default: stdout)")
    gen.add_argument("--force", action="store_true", help="overwrite an existing file")
    gen.set_defaults(func=cmd_generate_config)

    reg = sub.add_parser("register-user", help="create a user account from the shell")
    with_config(reg)
    reg.add_argument("username", help="localpart, e.g. alice")
    reg.add_argument("-p", "--password", help="password (prompted when omitted)")
    reg.add_argument("-a", "--admin", action="store_true", help="make the user a server admin")
    reg.set_defaults(func=cmd_register_user)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
