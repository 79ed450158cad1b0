"""``python -m bridges.ldap_sync --config FILE [--dry-run] [--once | --interval 10m]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time

from .config import ConfigError, SyncConfig, load_config
from .sync import SyncAborted, run_once

logger = logging.getLogger("bridges.ldap_sync")

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"bad interval {text!r} (e.g. 30s, 10m, 1h)")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def _one(config: SyncConfig, dry_run: bool) -> int:
    try:
        result = asyncio.run(run_once(config, dry_run=dry_run))
    except SyncAborted as exc:
        print(f"ldap sync aborted: {exc}", file=sys.stderr, flush=True)
        return 2
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if result.errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridges.ldap_sync",
        description="Mirror an LDAP directory into accounts, spaces and rooms",
    )
    parser.add_argument("--config", "-c", required=True, help="the sync's YAML config")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one run, then exit (the default)")
    mode.add_argument("--interval", type=parse_interval, help="run again after this long (30s, 10m, 1h)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ldap sync: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.interval is None:
        return _one(config, args.dry_run)
    while True:  # a failed run is reported and the next one tries again
        started = time.monotonic()
        _one(config, args.dry_run)
        try:
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
