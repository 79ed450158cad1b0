"""Shared by the backup and port-db tests: a server with users, rooms, messages and media."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from synapse_compat_tests.client import MatrixClient, register_user
from synapse_compat_tests.launcher import LaunchedServer

KOREAN = "3학년 2반 수학 숙제는 내일까지입니다"


def homeserver(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Site:
    """What a client was told (acknowledged): ids of sent events, uploaded media, tokens."""

    token: str
    user_id: str
    room_id: str
    events: list[str] = field(default_factory=list)
    media: dict[str, bytes] = field(default_factory=dict)

    def client(self, server: LaunchedServer) -> MatrixClient:
        return MatrixClient(server.base_url).with_token(self.token)


def populate(server: LaunchedServer, messages: int = 20) -> Site:
    admin = MatrixClient(server.base_url)
    user_id, token, _ = register_user(admin, server.shared_secret, "alice")
    _, bob_token, _ = register_user(admin, server.shared_secret, "bob")
    client = admin.with_token(token)
    status, body, _ = client.post(
        "/_matrix/client/v3/createRoom", {"name": "3학년 2반", "preset": "public_chat"}
    )
    assert status == 200, body
    site = Site(token, user_id, body["room_id"])
    status, body, _ = admin.with_token(bob_token).post(f"/_matrix/client/v3/join/{site.room_id}", {})
    assert status == 200, body
    for i in range(messages):
        text = KOREAN if i == 0 else f"message {i}"
        send(site, server, text, f"m{i}")
    for i in range(2):
        data = f"file {i} ".encode() * 100
        status, body, _ = client.request(
            "POST", "/_matrix/media/v3/upload", data=data, headers={"Content-Type": "text/plain"}
        )
        assert status == 200, body
        site.media[body["content_uri"]] = data
    return site


def send(site: Site, server: LaunchedServer, text: str, txn: str) -> str:
    path = f"/_matrix/client/v3/rooms/{site.room_id}/send/m.room.message/{txn}"
    status, body, _ = site.client(server).put(path, {"msgtype": "m.text", "body": text})
    assert status == 200, body
    site.events.append(body["event_id"])
    return str(body["event_id"])


def check_site(site: Site, server: LaunchedServer, events: list[str] | None = None) -> None:
    """Every acknowledged event and media file is served by `server`, the old token works and
    search still finds the Korean message by a substring."""
    client = site.client(server)
    status, body, _ = client.get(
        f"/_matrix/client/v3/rooms/{site.room_id}/messages", params={"dir": "b", "limit": 1000}
    )
    assert status == 200, body
    present = {e["event_id"] for e in body["chunk"]}
    missing = [e for e in (events if events is not None else site.events) if e not in present]
    assert not missing, f"{len(missing)} acknowledged events lost: {missing[:5]}"
    for uri, data in site.media.items():
        server_name, media_id = uri[len("mxc://") :].split("/")
        status, _, _ = resp = client.get(f"/_matrix/client/v1/media/download/{server_name}/{media_id}")
        assert status == 200 and resp.raw == data, uri
    status, body, _ = client.post(
        "/_matrix/client/v3/search", {"search_categories": {"room_events": {"search_term": "숙제"}}}
    )
    assert status == 200, body
    assert body["search_categories"]["room_events"]["count"] >= 1, body
