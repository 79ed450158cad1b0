"""Helpers for the membership federation tests: a fake remote server that signs its requests and
events with its own key, and a federation client that routes one in-process app's outbound
requests to another in-process app (two servers without processes or TLS)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from signedjson.key import generate_signing_key
from yarl import URL

from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.request_auth import sign_request
from homeserver.events import constants as c
from homeserver.events.builder import build_event
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.federation.client import RemoteHttpError, RequestSendFailed

from ..conftest import services_of

REMOTE = "remote.example"
REMOTE_KEY = ServerSigningKey.from_signing_key(generate_signing_key("r1"))
FOREVER = 2**62


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def trust(client: Any, *servers: tuple[str, ServerSigningKey]) -> None:
    """The app's keyring knows exactly these servers' keys."""
    services_of(client).keyring = InMemoryKeyring(
        tuple(ServerVerifyKey(name, key.key_id, key.verify_key, FOREVER) for name, key in servers)
    )


class FakeRemote:
    """A remote server talking to the app under test with X-Matrix signed requests."""

    def __init__(self, client: Any, name: str = REMOTE, key: ServerSigningKey = REMOTE_KEY) -> None:
        self.client = client
        self.name = name
        self.key = key
        self.destination = services_of(client).config.server_name

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        args: list[tuple[str, str]] | None = None,
        key: ServerSigningKey | None = None,
    ) -> tuple[int, Any]:
        uri = path + ("?" + urllib.parse.urlencode(args) if args else "")
        header = sign_request(
            key or self.key,
            origin=self.name,
            destination=self.destination,
            method=method,
            uri=uri,
            content=body,
        )
        resp = await self.client.request(
            method, URL(uri, encoded=True), json=body, headers={"Authorization": header}
        )
        return resp.status, await resp.json()

    async def make(
        self, kind: str, room_id: str, user_id: str, versions: list[str] | None = None
    ) -> tuple[int, Any]:
        args = [("ver", v) for v in (versions if versions is not None else ["10", "11", "12"])]
        return await self.request(
            "GET", f"/_matrix/federation/v1/{kind}/{q(room_id)}/{q(user_id)}", args=args
        )

    def sign(self, version: RoomVersion, template: Mapping[str, Any], **content: Any) -> Event:
        """The member event built from a make_* template, hashed and signed by this server."""
        return build_event(
            version,
            room_id=template["room_id"],
            sender=template["sender"],
            type=template["type"],
            content={**template["content"], **content},
            state_key=template["state_key"],
            prev_event_ids=template["prev_events"],
            auth_event_ids=template["auth_events"],
            depth=template["depth"],
            origin_server_ts=template["origin_server_ts"],
            server_name=self.name,
            signing_key=self.key,
        )

    async def handshake(
        self, kind: str, room_id: str, user_id: str, **args: str
    ) -> tuple[int, Any, Event | None]:
        """make_<kind> then send_<kind>; (status, body, event)."""
        status, body = await self.make(f"make_{kind}", room_id, user_id)
        if status != 200:
            return status, body, None
        version = get_room_version(body["room_version"])
        assert version is not None
        event = self.sign(version, body["event"])
        api = "v1" if kind == "knock" else "v2"
        status, body = await self.request(
            "PUT",
            f"/_matrix/federation/{api}/send_{kind}/{q(room_id)}/{q(event.event_id)}",
            {k: v for k, v in event.pdu.items() if k != "unsigned"},
            args=list(args.items()) or None,
        )
        return status, body, event


def remote_event(
    version: RoomVersion,
    *,
    room_id: str,
    sender: str,
    type: str = c.MEMBER,
    state_key: str | None = None,
    content: Mapping[str, Any],
    key: ServerSigningKey = REMOTE_KEY,
    server: str = REMOTE,
) -> Event:
    """An event of a room that lives only on the remote server (prev/auth events are made up)."""
    return build_event(
        version,
        room_id=room_id,
        sender=sender,
        type=type,
        content=content,
        state_key=state_key,
        prev_event_ids=["$prev"],
        auth_event_ids=["$create", "$power", "$member"],
        depth=5,
        origin_server_ts=1_700_000_000_000,
        server_name=server,
        signing_key=key,
    )


class InProcessFederation:
    """Stands in for FederationClient: requests to a named server go to that server's in-process
    app, signed with the sending server's key; errors surface as the real client raises them."""

    def __init__(self, own_name: str, own_key: ServerSigningKey, servers: dict[str, Any]) -> None:
        self.server_name = own_name
        self.key = own_key
        self.servers = servers
        self.requests: list[tuple[str, str, str]] = []

    async def get_json(self, destination: str, path: str, args: Any = None, **_kw: Any) -> Any:
        return await self.request("GET", destination, path, args, None)

    async def post_json(self, destination: str, path: str, body: Any, **_kw: Any) -> Any:
        return await self.request("POST", destination, path, None, body)

    async def request(
        self, method: str, destination: str, path: str, args: Any, body: Any, **_kw: Any
    ) -> Any:
        self.requests.append((method, destination, path))
        target = self.servers.get(destination)
        if target is None:
            raise RequestSendFailed(destination, "connection refused")
        uri = path + ("?" + urllib.parse.urlencode(args, doseq=True) if args else "")
        header = sign_request(
            self.key, origin=self.server_name, destination=destination, method=method, uri=uri, content=body
        )
        resp = await target.request(
            method, URL(uri, encoded=True), json=body, headers={"Authorization": header}
        )
        parsed = await resp.json()
        if not 200 <= resp.status < 300:
            raise RemoteHttpError(destination, resp.status, parsed)
        return parsed
