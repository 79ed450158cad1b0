"""A throwaway PostgreSQL cluster (initdb + pg_ctl) for tests that stop and start PostgreSQL.

Such tests must never touch the shared server on 5432: they run their OWN cluster from the
installed PostgreSQL binaries, on a spare loopback port, in a temp dir. Without the binaries they
skip (fail under CI=true). Used by tests/clients/test_postgres_outage.py and tests/scaleout/.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from synapse_compat_tests.launcher import free_port

DB_NAME = "homeserver"


@dataclass
class Cluster:
    bindir: Path
    datadir: Path
    port: int
    as_postgres: list[str]  # command prefix: run as the postgres user when we are root

    def _ctl(self, *args: str) -> None:
        cmd = [
            *self.as_postgres,
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.datadir / "server.log"),
            "-w",
            "-t",
            "60",
            *args,
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} -c fsync=off"
        self._ctl("-o", options, "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def database_config(self, database: str = DB_NAME, cp_max: int = 5) -> dict[str, Any]:
        return {
            "name": "psycopg2",
            "args": {
                "user": "postgres",
                "host": "127.0.0.1",
                "port": self.port,
                "database": database,
                "cp_min": 1,
                "cp_max": cp_max,
            },
        }

    def create_database(self, name: str) -> None:
        asyncio.run(create_database(self.port, name))


def _pg_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return Path(candidate)
    return None


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started cluster with an empty `homeserver` database; destroyed afterwards."""
    bindir = _pg_bindir()
    if bindir is None:
        message = "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    # initdb refuses to run as root: run the cluster as the postgres user then.
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # Directly under /tmp, not pytest's tmp_path: the postgres user must be able to reach it.
    datadir = Path(tempfile.mkdtemp(prefix="hs-pg-outage-"))
    if as_postgres:
        shutil.chown(datadir, "postgres", "postgres")
    subprocess.run(
        [
            *as_postgres,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pg = Cluster(bindir, datadir, free_port(), as_postgres)
    pg.start()
    try:
        pg.create_database(DB_NAME)
        yield pg
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(datadir, ignore_errors=True)


async def create_database(port: int, name: str = DB_NAME) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        await conn.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'"
        )
    finally:
        await conn.close()
