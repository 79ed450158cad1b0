"""Helpers for the federation read tests: a fake remote server that signs its requests with its
own key (the app's keyring is swapped for one that knows it), and remote users joined to local
rooms by hand-built membership events persisted through `EventPersister.persist`."""

from __future__ import annotations

import itertools
import json
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from signedjson.key import generate_signing_key
from yarl import URL

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.container import Services
from homeserver.core.clock import Clock
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.request_auth import sign_request
from homeserver.events.builder import build_event
from homeserver.events.context import EventContext, EventKind
from homeserver.events.event import Event
from homeserver.federation.client import RequestSendFailed

from ..conftest import make_config, services_of
from .helpers import auth

SERVER = "test.local"
REMOTE = "remote.example"
OTHER = "other.example"
KEYS = {
    REMOTE: ServerSigningKey.from_signing_key(generate_signing_key("r1")),
    OTHER: ServerSigningKey.from_signing_key(generate_signing_key("o1")),
}
FED = "/_matrix/federation/v1"
_txn = itertools.count()
V3 = "/_matrix/client/v3"


def trust_remotes(services: Services) -> None:
    services.keyring = InMemoryKeyring(
        tuple(ServerVerifyKey(name, key.key_id, key.verify_key, 2**62) for name, key in KEYS.items())
    )


async def start(aiohttp_client: Any, tmp_path: Path, clock: Clock | None = None, **extra: Any) -> Any:
    """A server on SQLite whose keyring knows the fake remotes."""
    return await start_with(aiohttp_client, lambda **kw: make_config(tmp_path, **kw), clock, **extra)


async def start_with(
    aiohttp_client: Any, config: Callable[..., HomeserverConfig], clock: Clock | None = None, **extra: Any
) -> Any:
    """As `start`, with a config factory (the `engine_config` fixture: both engines)."""
    client = await aiohttp_client(create_app_from_config(config(**extra), clock=clock))
    trust_remotes(services_of(client))
    return client


async def fed_get(client: Any, path: str, args: Any = None, origin: str = REMOTE) -> tuple[int, Any]:
    """A GET signed by `origin`; `args` a dict or a list of pairs (repeated keys)."""
    uri = FED + path + ("?" + urllib.parse.urlencode(args, doseq=True) if args else "")
    header = sign_request(KEYS[origin], origin=origin, destination=SERVER, method="GET", uri=uri)
    # encoded=True: the request line must be exactly what was signed (no re-quoting)
    resp = await client.get(URL(uri, encoded=True), headers={"Authorization": header})
    return resp.status, await resp.json()


async def fed_post(client: Any, path: str, body: Any, origin: str = REMOTE) -> tuple[int, Any]:
    uri = FED + path
    header = sign_request(
        KEYS[origin], origin=origin, destination=SERVER, method="POST", uri=uri, content=body
    )
    resp = await client.post(URL(uri, encoded=True), json=body, headers={"Authorization": header})
    return resp.status, await resp.json()


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


async def create_room(client: Any, token: str, **body: Any) -> str:
    body.setdefault("preset", "public_chat")
    resp = await client.post(f"{V3}/createRoom", json=body, headers=auth(token))
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["room_id"])


async def send(client: Any, token: str, room_id: str, text: str) -> str:
    resp = await client.put(
        f"{V3}/rooms/{room_id}/send/m.room.message/t{next(_txn)}",
        json={"msgtype": "m.text", "body": text},
        headers=auth(token),
    )
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["event_id"])


async def put_state(client: Any, token: str, room_id: str, etype: str, content: Any, key: str = "") -> str:
    resp = await client.put(f"{V3}/rooms/{room_id}/state/{etype}/{q(key)}", json=content, headers=auth(token))
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["event_id"])


async def persist_member(
    services: Services, room_id: str, user_id: str, membership: str, *, sender: str | None = None
) -> Event:
    """A membership event for `user_id` extending the room's tip, signed by the sender's server
    (a remote server's key, or ours for a local sender), persisted as a received event."""
    sender = sender or user_id
    snapshot = await services.state.get(room_id)
    assert snapshot is not None and len(snapshot.extremities) == 1
    state = {k: e.event_id for k, e in snapshot.state.items()}
    wanted = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")]
    wanted += [("m.room.member", sender), ("m.room.member", user_id)]
    server = sender.split(":", 1)[1]
    key = services.signing_key if server == SERVER else KEYS[server]
    event = build_event(
        snapshot.version,
        room_id=room_id,
        sender=sender,
        type="m.room.member",
        content={"membership": membership},
        state_key=user_id,
        prev_event_ids=list(snapshot.extremities),
        auth_event_ids=list(dict.fromkeys(state[k] for k in wanted if k in state)),
        depth=snapshot.depth + 1,
        origin_server_ts=services.clock.time_ms(),
        server_name=server,
        signing_key=key,
    )
    await services.persister.persist([EventContext(event, EventKind.REMOTE_NEW, state)])
    return event


def route_federation(services: Services, peers: dict[str, Any]) -> None:
    """Send this server's outbound federation requests to in-process peers (test clients) by
    destination, signed as usual; any other destination is unreachable."""
    client = services.federation_client

    async def send(
        method: str, destination: str, uri: str, body: Mapping[str, Any] | None, signed: bool
    ) -> tuple[int, Any]:
        peer = peers.get(destination)
        if peer is None:
            raise RequestSendFailed(destination, "unreachable (test)")
        header = sign_request(
            services.signing_key,
            origin=client.server_name,
            destination=destination,
            method=method,
            uri=uri,
            content=body,
        )
        resp = await peer.request(
            method, URL(uri, encoded=True), headers={"Authorization": header}, json=body
        )
        raw = await resp.read()
        return resp.status, json.loads(raw) if raw else None

    client._send = send  # type: ignore[method-assign]


def trust_server(peer_services: Services, services: Services) -> None:
    """Let `peer_services` verify requests signed by `services` (and the fake remotes)."""
    key = services.signing_key
    peer_services.keyring = InMemoryKeyring(
        (
            ServerVerifyKey(services.config.server_name, key.key_id, key.verify_key, 2**62),
            *(ServerVerifyKey(name, k.key_id, k.verify_key, 2**62) for name, k in KEYS.items()),
        )
    )
