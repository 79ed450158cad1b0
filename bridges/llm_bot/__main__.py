"""``python -m bridges.llm_bot --config llm-bot.yaml``: run the bot as its own process (the
registration's `url` must point at `listen_host:listen_port`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web

from bridges.llm_bot.bot import LlmBot
from bridges.llm_bot.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridges.llm_bot", description="Matrix LLM bot")
    parser.add_argument("--config", "-c", default="llm-bot.yaml", help="the bot's YAML configuration")
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"llm bot: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print("configuration OK")
        return 0
    bot = LlmBot(config)
    try:
        web.run_app(
            bot.make_app(),
            host=config.listen_host,
            port=config.listen_port,
            print=None,
            access_log=None,
            loop=asyncio.new_event_loop(),
        )
    except OSError as exc:
        print(f"llm bot: cannot listen on port {config.listen_port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
