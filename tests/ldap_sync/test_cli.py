"""`python -m bridges.ldap_sync` as operators run it: a subprocess against slapd and our
homeserver (served by the test's event loop while the process runs)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..ldap.slapd import Slapd, running_slapd
from .harness import Env, start, sync_config_dict


@pytest.fixture
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridges.ldap_sync",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


def write_config(env: Env, **overrides: Any) -> Path:
    raw = sync_config_dict(env.tmp_path, env.url, env.slapd.uri, env.registration, env.admin_token)
    raw.update(overrides)
    path = env.tmp_path / "ldap-sync.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


async def test_cli_dry_run_then_once(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, slapd: Slapd
) -> None:
    env = await start(aiohttp_server, aiohttp_client, tmp_path, slapd)
    config = write_config(env)
    code, out, err = await cli("--config", str(config), "--dry-run")
    assert code == 0, err
    assert "create_user  create @s.doyoon:test.local (강도윤)" in out
    assert out.strip().endswith("(dry run: nothing changed)")
    assert "create_space 6" in out
    assert await env.rooms() == []

    code, out, err = await cli("--config", str(config), "--once")
    assert code == 0, err
    assert "done: 89 applied, 0 failed" in out
    assert "[89/89]" in out  # progress
    code, out, err = await cli("-c", str(config))
    assert code == 0 and "plan: nothing to do" in out


async def test_cli_ldap_down_exits_2_with_a_clear_message(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, slapd: Slapd
) -> None:
    env = await start(aiohttp_server, aiohttp_client, tmp_path, slapd)
    config = write_config(env)
    slapd.stop()
    code, _out, err = await cli("--config", str(config))
    assert code == 2
    assert "ldap sync aborted: cannot reach the LDAP directory at ldap://127.0.0.1:" in err
    assert "nothing was changed" in err
    assert await env.rooms() == []


async def test_cli_bad_config_and_arguments(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("homeserver: {url: x}\n")
    code, _, err = await cli("--config", str(path))
    assert code == 2 and "configuration error: homeserver:" in err
    code, _, err = await cli("--config", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read" in err
    code, _, err = await cli("--config", str(path), "--interval", "soon")
    assert code == 2 and "bad interval" in err
    code, _, err = await cli("--config", str(path), "--once", "--interval", "10m")
    assert code == 2 and "not allowed with" in err


async def test_cli_interval_runs_again_and_survives_a_failed_run(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, slapd: Slapd
) -> None:
    env = await start(aiohttp_server, aiohttp_client, tmp_path, slapd)
    config = write_config(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridges.ldap_sync",
        "--config",
        str(config),
        "--interval",
        "1s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        seen: list[str] = []

        async def until(text: str) -> None:
            while not any(text in line for line in seen):
                line = await asyncio.wait_for(process.stdout.readline(), 60)  # type: ignore[union-attr]
                assert line, "the sync exited"
                seen.append(line.decode())

        await until("done: 89 applied")
        await until("plan: nothing to do")  # the second run
        slapd.stop()  # a run with LDAP down is reported, the loop goes on
        while True:  # stderr also carries the warnings about skipped entries
            error = await asyncio.wait_for(process.stderr.readline(), 60)
            assert error, "the sync exited"
            if b"ldap sync aborted" in error:
                break
        assert b"cannot reach the LDAP directory" in error
        assert process.returncode is None
    finally:
        process.terminate()
        await process.wait()
