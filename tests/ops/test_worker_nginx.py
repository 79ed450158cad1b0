"""docker/nginx/matrix.conf under a real nginx: `nginx -t` accepts it, and requests reach the
role Synapse's worker documentation sends them to. The compose hostnames are replaced with
loopback stand-ins that answer with their own name, so the routing itself is what is tested
(sticky per user for /sync, media to media, federation to federation_inbound, the rest to main)."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from synapse_compat_tests.launcher import free_port
from tests.clients.test_reverse_proxy import _main_conf, _require

CONF = Path(__file__).resolve().parents[2] / "docker" / "nginx" / "matrix.conf"
BACKENDS = ("main", "reader1", "reader2", "media1", "federation1")


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "backend": self.server.name,  # type: ignore[attr-defined]
                "path": self.path,
                "upgrade": self.headers.get("Upgrade"),
                "connection": self.headers.get("Connection"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Front:
    port: int
    backends: dict[str, ThreadingHTTPServer]

    def route(self, method: str, path: str, token: str | None = None) -> str:
        return str(self.request(method, path, token)["backend"])

    def request(
        self, method: str, path: str, token: str | None = None, headers: dict[str, str] | None = None
    ) -> dict[str, str]:
        """What the backend saw (its name, the path, the Upgrade and Connection headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            sent = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request(
                method, path, body=b"{}" if method != "GET" else None, headers=sent | (headers or {})
            )
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == 200, (path, resp.status, data[:300])
            return dict(json.loads(data))
        finally:
            conn.close()


def render(template: str, ports: dict[str, int], listen: int) -> str:
    text = template
    for name, port in ports.items():
        text, count = re.subn(rf"server {name}:\d+", f"server 127.0.0.1:{port}", text)
        assert count == 1, f"no upstream server line for {name}"
    for old, new in (("listen 80;", f"listen 127.0.0.1:{listen};"), ("listen 8448;", "")):
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    nginx = _require("nginx")
    workdir = tmp_path_factory.mktemp("nginx-workers")
    backends: dict[str, ThreadingHTTPServer] = {}
    for name in BACKENDS:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        backends[name] = server
    port = free_port()
    site = workdir / "matrix.conf"
    site.write_text(render(CONF.read_text(), {n: s.server_address[1] for n, s in backends.items()}, port))
    conf = workdir / "nginx.conf"
    conf.write_text(_main_conf(workdir, site))
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(workdir)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness poll
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((workdir / "error.log").read_text()) from None
                time.sleep(0.1)
        yield Front(port, backends)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        for server in backends.values():
            server.shutdown()
            server.server_close()


READER_ROUTES = [
    ("GET", "/_matrix/client/v3/sync?since=s1&timeout=30000"),
    ("GET", "/_matrix/client/r0/sync"),
    ("GET", "/_matrix/client/v3/rooms/!a:example.com/messages?dir=b"),
    ("GET", "/_matrix/client/v3/rooms/!a:example.com/context/$e"),
    ("GET", "/_matrix/client/v3/rooms/!a:example.com/members"),
    ("GET", "/_matrix/client/v3/rooms/!a:example.com/state"),
    ("GET", "/_matrix/client/v1/rooms/!a:example.com/relations/$e"),
    ("POST", "/_matrix/client/v3/keys/query"),
    ("GET", "/_matrix/client/v3/keys/changes?from=a&to=b"),
    ("POST", "/_matrix/client/v3/search"),
    ("POST", "/_matrix/client/v3/user_directory/search"),
    ("GET", "/_matrix/client/v3/publicRooms"),
    ("GET", "/_matrix/client/v3/profile/@a:example.com"),
    ("GET", "/_matrix/client/v3/joined_rooms"),
    ("POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"),
    ("GET", "/_matrix/client/unstable/org.homeserver.ws/sync"),
]
MAIN_ROUTES = [
    ("PUT", "/_matrix/client/v3/rooms/!a:example.com/send/m.room.message/t1"),
    ("POST", "/_matrix/client/v3/login"),
    ("POST", "/_matrix/client/v3/createRoom"),
    ("POST", "/_matrix/client/v3/keys/upload"),
    ("GET", "/_matrix/client/versions"),
    ("GET", "/_matrix/client/v3/account/whoami"),
    ("PUT", "/_matrix/client/v3/rooms/!a:example.com/typing/@a:example.com"),
    ("GET", "/_synapse/admin/v1/server_version"),
    ("GET", "/_synapse/client/pick_idp"),
    ("GET", "/.well-known/matrix/client"),
    ("GET", "/health"),
]
MEDIA_ROUTES = [
    ("GET", "/_matrix/media/v3/download/example.com/abc"),
    ("POST", "/_matrix/media/v3/upload"),
    ("GET", "/_matrix/client/v1/media/download/example.com/abc"),
    ("GET", "/_matrix/client/v1/media/thumbnail/example.com/abc?width=32&height=32"),
]
FEDERATION_ROUTES = [
    ("PUT", "/_matrix/federation/v1/send/123"),
    ("GET", "/_matrix/federation/v1/version"),
    ("GET", "/_matrix/key/v2/server"),
]


def test_nginx_accepts_the_sample(front: Front) -> None:
    assert front.route("GET", "/health") == "main"


@pytest.mark.parametrize(("method", "path"), READER_ROUTES)
def test_reads_go_to_a_client_reader(front: Front, method: str, path: str) -> None:
    assert front.route(method, path, token="tok") in ("reader1", "reader2")


@pytest.mark.parametrize(("method", "path"), MAIN_ROUTES)
def test_writes_and_the_rest_go_to_main(front: Front, method: str, path: str) -> None:
    assert front.route(method, path, token="tok") == "main"


@pytest.mark.parametrize(("method", "path"), MEDIA_ROUTES)
def test_media_goes_to_the_media_worker(front: Front, method: str, path: str) -> None:
    assert front.route(method, path, token="tok") == "media1"


@pytest.mark.parametrize(("method", "path"), FEDERATION_ROUTES)
def test_federation_goes_to_federation_inbound(front: Front, method: str, path: str) -> None:
    assert front.route(method, path) == "federation1"


def test_sync_is_sticky_per_user_and_spread_across_readers(front: Front) -> None:
    seen: dict[str, str] = {}
    for n in range(40):
        token = f"syt_user{n}_token"
        first = front.route("GET", "/_matrix/client/v3/sync", token=token)
        for _ in range(3):
            assert front.route("GET", "/_matrix/client/v3/sync?since=x", token=token) == first
        # Other reads of the same user land on the same reader too.
        assert front.route("GET", "/_matrix/client/v3/rooms/!r:x/messages", token=token) == first
        seen[token] = first
    assert set(seen.values()) == {"reader1", "reader2"}


def test_websocket_upgrade_reaches_the_reader_as_one(front: Front) -> None:
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
    seen = front.request("GET", "/_matrix/client/v3/sync", "tok", upgrade)
    assert seen["backend"] in ("reader1", "reader2")
    assert (seen["upgrade"], seen["connection"].lower()) == ("websocket", "upgrade")
    plain = front.request("GET", "/_matrix/client/v3/sync", "tok")
    assert plain["upgrade"] is None and plain["connection"] in (None, "")  # keep-alive upstream


def test_query_string_token_is_sticky_too(front: Front) -> None:
    first = front.route("GET", "/_matrix/client/v3/sync?access_token=legacy1")
    for _ in range(5):
        assert front.route("GET", "/_matrix/client/v3/sync?timeout=0&access_token=legacy1") == first


def test_a_dead_reader_fails_over(front: Front) -> None:
    """With one reader gone, its users' syncs are answered by the other."""
    reader1 = front.backends["reader1"]
    tokens = [f"syt_failover{n}" for n in range(20)]
    on_reader1 = [t for t in tokens if front.route("GET", "/_matrix/client/v3/sync", token=t) == "reader1"]
    assert on_reader1
    reader1.shutdown()
    reader1.server_close()
    for token in on_reader1:
        assert front.route("GET", "/_matrix/client/v3/sync", token=token) == "reader2"
