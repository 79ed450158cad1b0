"""The test appservice: its registration file and a tiny HTTP server that plays the appservice.

Registrations must be known to a homeserver when it starts, so the launcher writes one (a free
loopback port for the appservice's `url`, random tokens) and passes it in
`app_service_config_files`; against an external server (`--base-url`) the same file is given with
`--appservice-registration` / `MATRIX_APPSERVICE_REGISTRATION` (for a reference Synapse:
`python bench/synapse_ref.py start ... --set 'app_service_config_files=["PATH"]'`).

The namespace is `@cas_...` / `#cas_...` (exclusive), and the sender is `cas_bot`: localparts
an ordinary registration may use, so that the M_EXCLUSIVE check (and not the reserved-underscore
rule) is what refuses them.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

AS_ID = "compat_as"
SENDER_LOCALPART = "cas_bot"
USER_PREFIX = "cas_"
PROTOCOL = "compatnet"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_registration(directory: Path) -> Path:
    registration = {
        "id": AS_ID,
        "url": f"http://127.0.0.1:{_free_port()}",
        "as_token": secrets.token_hex(16),
        "hs_token": secrets.token_hex(16),
        "sender_localpart": SENDER_LOCALPART,
        "rate_limited": False,
        "protocols": [PROTOCOL],
        "namespaces": {
            "users": [{"exclusive": True, "regex": f"@{USER_PREFIX}.*"}],
            "aliases": [{"exclusive": True, "regex": f"#{USER_PREFIX}.*"}],
            "rooms": [],
        },
    }
    path = directory / "compat_appservice.yaml"
    path.write_text(yaml.safe_dump(registration, sort_keys=False))
    return path


@dataclass
class Registration:
    id: str
    url: str
    as_token: str
    hs_token: str
    sender_localpart: str

    @classmethod
    def load(cls, path: str | Path) -> Registration:
        raw = yaml.safe_load(Path(path).read_text())
        return cls(raw["id"], raw["url"], raw["as_token"], raw["hs_token"], raw["sender_localpart"])

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port


@dataclass
class Received:
    method: str
    path: str
    authorization: str | None
    body: Any


# (method, path) -> (status, json body); the path is the raw request path, query included
Responder = Callable[[str, str, Any], tuple[int, Any]]


@dataclass
class FakeAppService:
    """Records every request from the homeserver and answers through `responder`."""

    responder: Responder
    received: list[Received] = field(default_factory=list)


@contextmanager
def run_appservice(registration: Registration, responder: Responder) -> Iterator[FakeAppService]:
    """Listen on the registration's loopback port while the block runs."""
    fake = FakeAppService(responder)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            fake.received.append(Received(self.command, self.path, self.headers.get("Authorization"), body))
            status, answer = fake.responder(self.command, self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", registration.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
