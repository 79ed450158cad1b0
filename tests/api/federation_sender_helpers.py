"""A fake remote homeserver for the federation sender's tests: an aiohttp server on loopback over
TLS (a throwaway CA from tests/clients/test_federation_tls.py) that checks our X-Matrix signature
and records every transaction; its answers can be switched to failures."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from signedjson.key import generate_signing_key

from homeserver.app import create_app_from_config
from homeserver.container import Services
from homeserver.core.clock import Clock
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.request_auth import verify_request
from homeserver.events.builder import build_event
from homeserver.events.context import EventContext, EventKind
from synapse_compat_tests.spec_schema import api_dir, request_schema_ref, validate

from ..clients.test_federation_tls import make_ca_and_leaf
from ..conftest import make_config, services_of
from .helpers import auth, register

SERVER = "test.local"
TXN_SCHEMA = request_schema_ref("transactions.yaml", "/send/{txnId}", "put", api="server-server")
EDU_SCHEMAS = api_dir("server-server") / "definitions" / "event-schemas"


def check_against_spec(body: dict[str, Any]) -> None:
    """The transaction and each EDU of a type the spec defines match the spec's schemas."""
    assert TXN_SCHEMA is not None
    validate(TXN_SCHEMA, body, "PUT /send/{txnId} body")
    for edu in body.get("edus", []):
        schema = EDU_SCHEMAS / f"{edu['edu_type']}.yaml"
        if schema.exists():
            validate(schema.resolve().as_uri(), edu, f"{edu['edu_type']} EDU")


@dataclass
class Received:
    txn_id: str
    body: dict[str, Any]

    @property
    def pdus(self) -> list[dict[str, Any]]:
        return list(self.body.get("pdus", []))

    @property
    def edus(self) -> list[dict[str, Any]]:
        return list(self.body.get("edus", []))


@dataclass
class FakeRemote:
    """mode: "ok" (200), "fail" (500), "reject" (400), "hang" (never answers)."""

    name: str
    keyring: InMemoryKeyring
    mode: str = "ok"
    received: list[Received] = field(default_factory=list)  # accepted transactions
    attempts: list[str] = field(default_factory=list)  # every txn id tried, accepted or not
    seen_txns: set[str] = field(default_factory=set)
    auth_failures: int = 0
    spec_failures: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends "hang" (teardown)
    key: ServerSigningKey = field(
        default_factory=lambda: ServerSigningKey.from_signing_key(generate_signing_key("f1"))
    )

    async def handle(self, request: web.Request) -> web.Response:
        txn_id = request.match_info["txn_id"]
        body = await request.json()
        try:
            await verify_request(
                self.keyring,
                server_name=self.name,
                method="PUT",
                uri=request.raw_path,
                authorization=request.headers.getall("Authorization", []),
                content=body,
                now_ms=0,
            )
        except Exception:
            self.auth_failures += 1
            return web.json_response({"errcode": "M_UNAUTHORIZED"}, status=401)
        try:
            check_against_spec(body)
        except AssertionError as exc:
            self.spec_failures.append(str(exc))
        self.attempts.append(txn_id)
        if self.mode == "hang":
            await self.release.wait()
            return web.json_response({"errcode": "M_UNKNOWN"}, status=503)
        if self.mode == "fail":
            return web.json_response({"errcode": "M_UNKNOWN"}, status=500)
        if self.mode == "reject":
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=400)
        if txn_id not in self.seen_txns:  # a receiver deduplicates by (origin, txn id)
            self.seen_txns.add(txn_id)
            self.received.append(Received(txn_id, body))
        return web.json_response({"pdus": {}})

    # -- what arrived ------------------------------------------------------------------------

    def bodies(self) -> list[str]:
        """The `body` of every message PDU received, in order."""
        return [
            p["content"]["body"] for r in self.received for p in r.pdus if p.get("type") == "m.room.message"
        ]

    def edus_of(self, edu_type: str) -> list[dict[str, Any]]:
        return [e["content"] for r in self.received for e in r.edus if e["edu_type"] == edu_type]


async def start_remote(tmp_path: Path, our_key: ServerSigningKey) -> tuple[FakeRemote, web.AppRunner, Path]:
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    ca, chain, key = make_ca_and_leaf(certs)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(chain), str(key))
    keyring = InMemoryKeyring((ServerVerifyKey(SERVER, our_key.key_id, our_key.verify_key, 2**62),))
    remote = FakeRemote("", keyring)  # named once the port is known
    app = web.Application()
    app.router.add_put("/_matrix/federation/v1/send/{txn_id}", remote.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    remote.name = f"127.0.0.1:{port}"
    return remote, runner, ca


def fed_config(tmp_path: Path, ca: Path, engine: str = "sqlite", pg: str | None = None, **extra: Any) -> Any:
    # Presence off unless a test wants it: sending counts as activity, and a presence EDU racing
    # a PDU into the first transaction would make the transaction contents vary between runs.
    extra.setdefault("presence", {"enabled": False})
    return make_config(
        tmp_path,
        engine,
        pg,
        federation_custom_ca_list=[str(ca)],
        ip_range_whitelist=["127.0.0.0/8", "::1/128"],
        **extra,
    )


async def start_server(aiohttp_client: Any, config: Any, clock: Clock | None = None) -> tuple[Any, Services]:
    client = await aiohttp_client(create_app_from_config(config, clock=clock))
    return client, services_of(client)


async def settle(services: Services) -> None:
    """Until every local change is queued and every queue has done what it can."""
    sender = services.federation_sender
    assert sender is not None
    for _ in range(3):
        await services.federation_edus_out.drain()
        await sender.drained()


async def room_with_remote_member(
    client: Any, services: Services, remote: FakeRemote, token: str, remote_user: str | None = None
) -> tuple[str, str]:
    """A public room of ours that a user of `remote` has joined (their join persisted as a
    received event). Returns (room_id, remote user id)."""
    resp = await client.post(
        "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth(token)
    )
    room_id = (await resp.json())["room_id"]
    user = remote_user or f"@bob:{remote.name}"
    snapshot = await services.state.get(room_id)
    assert snapshot is not None
    before = {k: e.event_id for k, e in snapshot.state.items()}
    auth_keys = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")]
    join = build_event(
        snapshot.version,
        room_id=room_id,
        sender=user,
        type="m.room.member",
        content={"membership": "join"},
        state_key=user,
        prev_event_ids=list(snapshot.extremities),
        auth_event_ids=[before[k] for k in auth_keys if k in before],
        depth=snapshot.depth + 1,
        origin_server_ts=services.clock.time_ms(),
        server_name=remote.name,
        signing_key=remote.key,
    )
    await services.persister.persist([EventContext(join, EventKind.REMOTE_NEW, before)])
    return room_id, user


async def send_text(client: Any, token: str, room_id: str, body: str, txn: str | None = None) -> str:
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn or body}",
        json={"msgtype": "m.text", "body": body},
        headers=auth(token),
    )
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["event_id"])


__all__ = ["SERVER", "FakeRemote", "Received", "auth", "register", "room_with_remote_member", "send_text"]
