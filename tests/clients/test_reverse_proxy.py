"""Behind a real nginx: the sample docker/reverse-proxy/nginx.conf in front of the server.

The sample is rendered with loopback ports, a throw-away certificate and temp paths, and nginx
runs it with TLS. Clients connect from distinct loopback addresses (127.0.0.N) or through a
trusted outer proxy that sets X-Forwarded-For, and the server must attribute logins, rate limits
and last-seen to each of them, never to nginx and never to an address a client made up.
Needs the `nginx` and `openssl` commands (tests/run.sh installs them); without them the test
skips, except under CI=true where it fails.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from synapse_compat_tests.client import DEFAULT_PASSWORD, MatrixClient, register_user
from synapse_compat_tests.launcher import LaunchedServer, free_port, launch

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "docker" / "reverse-proxy" / "nginx.conf"
# rc_login.address for this server: tight, so that attributing clients to one address would show.
LOGINS_PER_ADDRESS = 3
OUTER_PROXY = "127.0.0.1"  # plays a load balancer in front of nginx (trusted_proxies)


def _require(command: str) -> str:
    path = shutil.which(command) or (
        f"/usr/sbin/{command}" if os.path.exists(f"/usr/sbin/{command}") else None
    )
    if path is None:
        message = f"`{command}` is not installed (tests/run.sh installs it with apt-get)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def render_sample(template: str, *, upstream_port: int, listen_port: int, cert: Path, key: Path) -> str:
    """The sample with our ports and files; each replaced line must exist, so the sample and
    this test cannot drift apart silently."""
    replacements = {
        "server 127.0.0.1:8008;": f"server 127.0.0.1:{upstream_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{listen_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",  # IPv6 loopback may be missing in containers
        "/etc/letsencrypt/live/matrix.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/matrix.example.com/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        assert old in template, f"docker/reverse-proxy/nginx.conf no longer contains {old!r}"
        template = template.replace(old, new)
    return template


def _main_conf(workdir: Path, site: Path) -> str:
    temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    return f"""
user root;
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {site};
}}
"""


@dataclass
class Proxied:
    server: LaunchedServer
    port: int

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        source: str = "127.0.0.1",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One HTTPS request through nginx, from the loopback address `source`."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=30, context=context, source_address=(source, 0)
        )
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(
                method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
            )
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def login(self, localpart: str, **kw: Any) -> tuple[int, Any]:
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart}}
        body["password"] = DEFAULT_PASSWORD
        return self.request("POST", "/_matrix/client/v3/login", body, **kw)

    def last_seen_ip(self, login: dict[str, Any], **kw: Any) -> str | None:
        headers = {"Authorization": f"Bearer {login['access_token']}", **kw.pop("headers", {})}
        status, body = self.request("GET", "/_matrix/client/v3/devices", headers=headers, **kw)
        assert status == 200, body
        device = next(d for d in body["devices"] if d["device_id"] == login["device_id"])
        return device.get("last_seen_ip")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    nginx = _require("nginx")
    openssl = _require("openssl")
    workdir = tmp_path_factory.mktemp("nginx")
    open_limit = {"per_second": 1_000_000, "burst_count": 1_000_000}
    server = launch(
        "sqlite",
        tmp_path_factory.mktemp("hs"),
        overrides={
            "rc_login": {
                "address": {"per_second": 0.001, "burst_count": LOGINS_PER_ADDRESS},
                "account": open_limit,
                "failed_attempts": open_limit,
            }
        },
        listener_overrides={"x_forwarded": True, "trusted_proxies": [f"{OUTER_PROXY}/32"]},
    )
    nginx_proc = None
    try:
        cert, key = workdir / "cert.pem", workdir / "key.pem"
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        port = free_port()
        upstream_port = int(server.base_url.rsplit(":", 1)[1])
        site = workdir / "matrix.conf"
        site.write_text(
            render_sample(
                SAMPLE.read_text(), upstream_port=upstream_port, listen_port=port, cert=cert, key=key
            )
        )
        conf = workdir / "nginx.conf"
        conf.write_text(_main_conf(workdir, site))
        check = subprocess.run(
            [nginx, "-t", "-c", str(conf), "-p", str(workdir)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        nginx_proc = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:  # readiness poll
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if nginx_proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((workdir / "error.log").read_text()) from None
                time.sleep(0.1)
        yield Proxied(server, port)
    finally:
        if nginx_proc is not None:
            nginx_proc.terminate()
            nginx_proc.wait(timeout=15)
        server.stop()


def _users(proxied: Proxied, prefix: str, count: int) -> list[str]:
    admin = MatrixClient(proxied.server.base_url)
    names = [f"{prefix}{i}" for i in range(count)]
    for name in names:
        register_user(admin, proxied.server.shared_secret, name)
    return names


def test_users_behind_an_outer_proxy_keep_their_addresses(proxied: Proxied) -> None:
    """20 users whose address a trusted load balancer put into X-Forwarded-For all log in."""
    logins = []
    for i, name in enumerate(_users(proxied, "pupil", 20)):
        status, body = proxied.login(name, headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
        assert status == 200, body
        logins.append(body)
    for i, login in enumerate(logins):
        assert (
            proxied.last_seen_ip(login, headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
            == f"198.51.100.{i + 1}"
        )

    # The login limit applies per client address, not to everyone behind nginx.
    same = {"X-Forwarded-For": "198.51.100.1"}
    statuses = [proxied.login("pupil0", headers=same)[0] for _ in range(LOGINS_PER_ADDRESS)]
    assert statuses == [200] * (LOGINS_PER_ADDRESS - 1) + [429]
    assert proxied.login("pupil1", headers={"X-Forwarded-For": "198.51.100.2"})[0] == 200


def test_clients_from_distinct_addresses(proxied: Proxied) -> None:
    """Clients connecting to nginx from 127.0.0.10..29 (no headers of their own)."""
    for i, name in enumerate(_users(proxied, "student", 20)):
        source = f"127.0.0.{10 + i}"
        status, body = proxied.login(name, source=source)
        assert status == 200, body
        assert proxied.last_seen_ip(body, source=source) == source


def test_untrusted_client_cannot_spoof_its_address(proxied: Proxied) -> None:
    (name,) = _users(proxied, "mallory", 1)
    spoof = {"X-Forwarded-For": "203.0.113.66", "X-Real-IP": "203.0.113.67"}
    status, login = proxied.login(name, source="127.0.0.2", headers=spoof)
    assert status == 200, login
    assert proxied.last_seen_ip(login, source="127.0.0.2", headers=spoof) == "127.0.0.2"
    # Nor dodge the per-address login limit by inventing addresses.
    statuses = [
        proxied.login(name, source="127.0.0.2", headers={"X-Forwarded-For": f"203.0.113.{n}"})[0]
        for n in range(LOGINS_PER_ADDRESS)
    ]
    assert statuses[-1] == 429


def test_long_filter_and_token_pass_through(proxied: Proxied) -> None:
    """A 12 KB inline filter and a 2 KB token get through nginx to the server."""
    (name,) = _users(proxied, "longurl", 1)
    status, login = proxied.login(name)
    assert status == 200, login
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    not_rooms = [f"!room{i}:localhost" for i in range(600)]
    filter_json = urllib.parse.quote(json.dumps({"room": {"not_rooms": not_rooms}}))
    assert len(filter_json) > 12_000
    status, body = proxied.request(
        "GET", f"/_matrix/client/v3/sync?timeout=0&filter={filter_json}", headers=headers
    )
    assert status == 200, body
    status, body = proxied.request(
        "GET", f"/_matrix/client/v3/sync?timeout=0&since=s{'9' * 2047}", headers=headers
    )
    assert isinstance(body, dict) and body.get("errcode") != "M_TOO_LARGE", body


def test_websocket_sync_through_nginx(proxied: Proxied) -> None:
    """WebSocket sync (docs/websocket.md) upgrades through the sample: frames both ways."""
    import asyncio

    import aiohttp

    (name,) = _users(proxied, "wsproxy", 1)
    status, login = proxied.login(name, source="127.0.0.9")
    assert status == 200, login
    status, room = proxied.request(
        "POST",
        "/_matrix/client/v3/createRoom",
        {},
        headers={"Authorization": f"Bearer {login['access_token']}"},
        source="127.0.0.9",
    )
    assert status == 200, room

    async def run() -> dict[str, Any]:
        url = f"https://127.0.0.1:{proxied.port}/_matrix/client/v3/sync"
        headers = {"Authorization": f"Bearer {login['access_token']}"}
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, headers=headers, ssl=False) as ws,
        ):
            assert json.loads((await ws.receive(timeout=30)).data)["type"] == "ready"
            first = json.loads((await ws.receive(timeout=30)).data)
            assert room["room_id"] in first["body"]["rooms"]["join"]
            await ws.send_str(
                json.dumps(
                    {
                        "type": "send",
                        "id": 1,
                        "room_id": room["room_id"],
                        "txn_id": "proxied",
                        "content": {"msgtype": "m.text", "body": "through nginx"},
                    }
                )
            )
            frames: dict[str, Any] = {}
            while "response" not in frames or "echo" not in frames:
                frame = json.loads((await ws.receive(timeout=30)).data)
                if frame["type"] == "response":
                    frames["response"] = frame
                elif frame["type"] == "sync" and room["room_id"] in frame["body"]["rooms"]["join"]:
                    frames["echo"] = frame
            return frames

    frames = asyncio.run(run())
    assert frames["response"]["status"] == 200
    event_id = frames["response"]["result"]["event_id"]
    timeline = frames["echo"]["body"]["rooms"]["join"][room["room_id"]]["timeline"]["events"]
    assert event_id in [e["event_id"] for e in timeline]
