"""``python -m bridges.push_gateway --config sygnal.yaml``: run the gateway as its own process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from aiohttp import web

from .config import ConfigError, load_config
from .logsetup import setup_logging
from .server import build_pushkins, create_app

logger = logging.getLogger("bridges.push_gateway")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridges.push_gateway", description="Matrix push gateway")
    parser.add_argument(
        "--config",
        "-c",
        default=os.environ.get("SYGNAL_CONF", "sygnal.yaml"),
        help="Sygnal-format YAML config (default: $SYGNAL_CONF or sygnal.yaml)",
    )
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        setup_logging(config.log_setup)
        pushkins = build_pushkins(config)
    except (ConfigError, ValueError) as exc:
        print(f"push gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print("configuration OK")
        return 0
    if config.prometheus_enabled:
        from prometheus_client import start_http_server

        start_http_server(config.prometheus_port, addr=config.prometheus_address)
        logger.info("Prometheus metrics on %s:%d", config.prometheus_address, config.prometheus_port)
    app = create_app(config, pushkins)
    try:
        web.run_app(
            app,
            host=config.bind_addresses,
            port=config.port,
            print=None,
            access_log=None,
            loop=asyncio.new_event_loop(),
        )
    except OSError as exc:
        print(f"push gateway: cannot listen on port {config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
