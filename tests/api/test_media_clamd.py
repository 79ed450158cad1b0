"""Virus scanning with a real clamd (Debian's clamav-daemon) and a signature database written
by the test: the EICAR test file, no freshclam, no network.

Skips when the clamd binary is missing; under CI=true that is a failure.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config

from ..conftest import make_config, services_of
from .helpers import auth, register

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
STREAM_MAX = 1024 * 1024  # clamd's StreamMaxLength for these tests


def _clamd_binary() -> str | None:
    return shutil.which("clamd") or next(
        (p for p in ("/usr/sbin/clamd", "/usr/local/sbin/clamd") if os.access(p, os.X_OK)), None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(sock_path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(sock_path)
            s.sendall(b"zPING\0")
            return s.recv(16).rstrip(b"\0") == b"PONG"
    except OSError:
        return False


@pytest.fixture(scope="module")
def clamd() -> Iterator[dict[str, Any]]:
    binary = _clamd_binary()
    if binary is None:
        message = "clamd not installed (apt-get install -y clamav-daemon)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # Short path: unix socket paths are limited to ~107 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="clamd-"))
    db = workdir / "db"
    db.mkdir()
    (workdir / "tmp").mkdir()
    md5 = hashlib.md5(EICAR).hexdigest()
    (db / "test.hdb").write_text(f"{md5}:{len(EICAR)}:Eicar-Test-Signature\n")
    (db / "test.ndb").write_text(f"Eicar-Test-Body:0:*:{EICAR.hex()}\n")
    sock = workdir / "clamd.sock"
    port = _free_port()
    conf = workdir / "clamd.conf"
    conf.write_text(
        f"LocalSocket {sock}\n"
        f"TCPSocket {port}\n"
        "TCPAddr 127.0.0.1\n"
        f"DatabaseDirectory {db}\n"
        f"TemporaryDirectory {workdir / 'tmp'}\n"
        f"LogFile {workdir / 'clamd.log'}\n"
        f"StreamMaxLength {STREAM_MAX}\n"
        "Foreground yes\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _ping(str(sock)):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "clamd.log").read_text() if (workdir / "clamd.log").exists() else ""
                pytest.fail(f"clamd did not start:\n{log[-2000:]}")
            time.sleep(0.1)
        yield {"socket": str(sock), "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


async def _client(aiohttp_client: Any, tmp_path: Path, clamd: dict[str, Any]) -> Any:
    return await aiohttp_client(create_app_from_config(make_config(tmp_path, clamd=clamd)))


async def _post(client: Any, token: str, data: bytes, content_type: str = "application/octet-stream") -> Any:
    return await client.post(
        "/_matrix/media/v3/upload?filename=f.bin",
        data=data,
        headers={**auth(token), "Content-Type": content_type},
    )


def _files_under(path: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(path) for f in files]


async def test_eicar_refused(
    aiohttp_client: Any, tmp_path: Path, clamd: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = await _client(aiohttp_client, tmp_path, {"socket": clamd["socket"]})
    user = await register(client)
    token = user["access_token"]

    with caplog.at_level(logging.WARNING, logger="homeserver.media.audit"):
        resp = await _post(client, token, EICAR, "text/plain")
    body = await resp.json()
    assert (resp.status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert "malware" in body["error"] and "Eicar" in body["error"]
    audit = [r for r in caplog.records if r.name == "homeserver.media.audit"]
    assert audit and user["user_id"] in audit[0].getMessage()
    assert hashlib.sha256(EICAR).hexdigest() in audit[0].getMessage()

    media = services_of(client).media
    rejections = await media.store.list_scan_rejections()
    assert len(rejections) == 1
    assert rejections[0]["user_id"] == user["user_id"]
    assert str(rejections[0]["signature"]).startswith("Eicar")
    assert rejections[0]["sha256"] == hashlib.sha256(EICAR).hexdigest()
    assert _files_under(media.storage.root) == []  # nothing kept, not even in tmp/

    # EICAR inside a bigger file is caught too (body signature).
    resp = await _post(client, token, b"A" * 300_000 + EICAR + b"B" * 300_000)
    assert resp.status == 403

    # Clean content goes through and is downloadable.
    resp = await _post(client, token, b"perfectly harmless" * 1000, "text/plain")
    assert resp.status == 200
    mxc = (await resp.json())["content_uri"][6:]
    resp = await client.get(f"/_matrix/client/v1/media/download/{mxc}", headers=auth(token))
    assert resp.status == 200 and await resp.read() == b"perfectly harmless" * 1000


async def test_eicar_refused_on_async_upload(
    aiohttp_client: Any, tmp_path: Path, clamd: dict[str, Any]
) -> None:
    client = await _client(aiohttp_client, tmp_path, {"host": "127.0.0.1", "port": clamd["port"]})  # over TCP
    user = await register(client)
    token = user["access_token"]
    resp = await client.post("/_matrix/media/v1/create", headers=auth(token))
    mxc = (await resp.json())["content_uri"][6:]
    resp = await client.put(f"/_matrix/media/v3/upload/{mxc}", data=EICAR, headers=auth(token))
    assert resp.status == 403
    resp = await client.get(f"/_matrix/client/v1/media/download/{mxc}?timeout_ms=0", headers=auth(token))
    assert (await resp.json())["errcode"] == "M_NOT_YET_UPLOADED"  # never became downloadable
    resp = await client.put(f"/_matrix/media/v3/upload/{mxc}", data=b"clean", headers=auth(token))
    assert resp.status == 200


async def test_scanner_errors_fail_closed(aiohttp_client: Any, tmp_path: Path, clamd: dict[str, Any]) -> None:
    client = await _client(aiohttp_client, tmp_path, {"socket": clamd["socket"]})
    user = await register(client)
    # Past clamd's StreamMaxLength there is no verdict: refused.
    resp = await _post(client, user["access_token"], b"z" * (STREAM_MAX + 10))
    assert resp.status == 503 and (await resp.json())["errcode"] == "M_UNKNOWN"
    assert _files_under(services_of(client).media.storage.root) == []


async def test_scanner_unreachable(aiohttp_client: Any, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-clamd.sock")
    client = await _client(aiohttp_client, tmp_path, {"socket": missing})
    user = await register(client)
    resp = await _post(client, user["access_token"], b"data")
    body = await resp.json()
    assert (resp.status, body["errcode"]) == (503, "M_UNKNOWN")
    assert "virus scanner" in body["error"]

    other = tmp_path / "open"
    other.mkdir()
    client = await _client(aiohttp_client, other, {"socket": missing, "fail_closed": False})
    user = await register(client)
    assert (await _post(client, user["access_token"], b"data")).status == 200
