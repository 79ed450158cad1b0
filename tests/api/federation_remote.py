"""An in-process fake remote homeserver for federation tests.

It serves, over TLS on loopback with a certificate from a throwaway CA, what our server asks other
servers for: its signing keys (`/_matrix/key/v2/server`, so our real keyring fetches and checks
them) and the event-pulling endpoints (`/get_missing_events`, `/state_ids`, `/state`, `/event`,
`/event_auth`, `/backfill`) from the events it holds. It builds and signs events with its own key
as a real server would, and sends transactions to our app with X-Matrix signatures.

Its server name is `localhost:<port>` (an explicit port: no .well-known, no SRV); the app under
test is configured with `remote_config(...)` to trust the CA and reach loopback.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from signedjson.key import generate_signing_key
from yarl import URL

from homeserver.container import Services
from homeserver.crypto.keys import ServerSigningKey, server_keys_response
from homeserver.crypto.request_auth import sign_request
from homeserver.events import constants as c
from homeserver.events.auth import auth_types_for_event
from homeserver.events.builder import build_event
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion

StateKey = tuple[str, str]
OUR_SERVER = "test.local"
_txn_counter = itertools.count()


def remote_config(ca: Path) -> dict[str, Any]:
    """Config overrides for the app under test so that it can talk to a FakeRemote."""
    return {
        "federation_custom_ca_list": [str(ca)],
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "trusted_key_servers": [],
    }


class FakeRemote:
    def __init__(self) -> None:
        self.key = ServerSigningKey.from_signing_key(generate_signing_key("fake1"))
        self.name = ""
        self.events: dict[str, Event] = {}
        self.state_before: dict[str, dict[StateKey, str]] = {}
        self.requests: list[str] = []
        # endpoint names ("get_missing_events", "state_ids", "event", ...) answered with a 500
        self.failing: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._ts = 1_800_000_000_000

    # -- serving -----------------------------------------------------------------------------------

    async def start(self, chain: Path, key: Path) -> None:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(chain), str(key))
        app = web.Application()
        fed = "/_matrix/federation/v1"
        app.router.add_get("/_matrix/key/v2/server", self._keys)
        app.router.add_post(fed + "/get_missing_events/{room}", self._get_missing_events)
        app.router.add_get(fed + "/state_ids/{room}", self._state_ids)
        app.router.add_get(fed + "/state/{room}", self._state)
        app.router.add_get(fed + "/event/{event_id}", self._event)
        app.router.add_get(fed + "/event_auth/{room}/{event_id}", self._event_auth)
        app.router.add_get(fed + "/backfill/{room}", self._backfill)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.name = f"localhost:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _log(self, name: str) -> None:
        self.requests.append(name)
        if name in self.failing:
            raise web.HTTPInternalServerError(
                text=json.dumps({"errcode": "M_UNKNOWN", "error": "failing on purpose"}),
                content_type="application/json",
            )

    async def _keys(self, request: web.Request) -> web.Response:
        return web.json_response(server_keys_response(self.name, self.key, self._ts + 10**10))

    async def _get_missing_events(self, request: web.Request) -> web.Response:
        self._log("get_missing_events")
        body = await request.json()
        earliest = set(body.get("earliest_events", []))
        limit = int(body.get("limit", 10))
        min_depth = int(body.get("min_depth", 0))
        seen: set[str] = set()
        found: list[Event] = []
        frontier = [
            p
            for e in body.get("latest_events", [])
            if e in self.events
            for p in self.events[e].prev_event_ids
        ]
        while frontier:
            event_id = frontier.pop()
            if event_id in seen or event_id in earliest or event_id not in self.events:
                continue
            seen.add(event_id)
            event = self.events[event_id]
            if event.depth < min_depth:
                continue
            found.append(event)
            frontier.extend(event.prev_event_ids)
        # the `limit` closest to the latest events, oldest first
        found.sort(key=lambda e: e.depth, reverse=True)
        return web.json_response({"events": [e.pdu for e in sorted(found[:limit], key=lambda e: e.depth)]})

    async def _state_ids(self, request: web.Request) -> web.Response:
        self._log("state_ids")
        event_id = request.query["event_id"]
        state = list(self.state_before[event_id].values())
        return web.json_response({"pdu_ids": state, "auth_chain_ids": sorted(self.auth_chain(state))})

    async def _state(self, request: web.Request) -> web.Response:
        self._log("state")
        event_id = request.query["event_id"]
        state = list(self.state_before[event_id].values())
        return web.json_response(
            {
                "pdus": [self.events[e].pdu for e in state],
                "auth_chain": [self.events[e].pdu for e in sorted(self.auth_chain(state))],
            }
        )

    async def _event(self, request: web.Request) -> web.Response:
        self._log("event")
        event = self.events.get(request.match_info["event_id"])
        if event is None:
            raise web.HTTPNotFound(text='{"errcode": "M_NOT_FOUND"}', content_type="application/json")
        return web.json_response({"origin": self.name, "origin_server_ts": self._ts, "pdus": [event.pdu]})

    async def _event_auth(self, request: web.Request) -> web.Response:
        self._log("event_auth")
        event = self.events[request.match_info["event_id"]]
        chain = self.auth_chain(event.auth_event_ids) | set(event.auth_event_ids)
        return web.json_response({"auth_chain": [self.events[e].pdu for e in sorted(chain)]})

    async def _backfill(self, request: web.Request) -> web.Response:
        self._log("backfill")
        limit = int(request.query.get("limit", "10"))
        frontier = list(request.query.getall("v"))
        seen: set[str] = set()
        found: list[Event] = []
        while frontier and len(found) < limit:
            frontier.sort(key=lambda e: self.events[e].depth if e in self.events else -1)
            event_id = frontier.pop()
            if event_id in seen or event_id not in self.events:
                continue
            seen.add(event_id)
            found.append(self.events[event_id])
            frontier.extend(self.events[event_id].prev_event_ids)
        return web.json_response(
            {"origin": self.name, "origin_server_ts": self._ts, "pdus": [e.pdu for e in found]}
        )

    # -- the DAG it knows ----------------------------------------------------------------------------

    def auth_chain(self, event_ids: Sequence[str]) -> set[str]:
        seen: set[str] = set()
        stack = [a for e in event_ids if e in self.events for a in self.events[e].auth_event_ids]
        while stack:
            event_id = stack.pop()
            if event_id in seen or event_id not in self.events:
                continue
            seen.add(event_id)
            stack.extend(self.events[event_id].auth_event_ids)
        return seen

    def state_after(self, event_id: str) -> dict[StateKey, str]:
        event = self.events[event_id]
        state = dict(self.state_before[event_id])
        if event.state_key is not None:
            state[(event.type, event.state_key)] = event_id
        return state

    def learn(self, event: Event, state_before: Mapping[StateKey, str]) -> None:
        self.events[event.event_id] = event
        self.state_before[event.event_id] = dict(state_before)

    async def learn_room(self, services: Services, room_id: str) -> list[str]:
        """Copy every event of our server's room (and the state before each); returns the tips."""
        snapshot = await services.state.get(room_id)
        assert snapshot is not None
        tips = list(snapshot.extremities)
        frontier = list(tips)
        while frontier:
            event_id = frontier.pop()
            if event_id in self.events:
                continue
            stored = await services.events.get_event(event_id)
            assert stored is not None
            before = await services.state.state_ids_at_event(event_id, before=True)
            self.learn(stored.event, before or {})
            frontier.extend(stored.event.prev_event_ids)
        return tips

    def make(
        self,
        version: RoomVersion,
        room_id: str,
        sender: str,
        type: str,
        content: dict[str, Any],
        *,
        prev: Sequence[str],
        state_key: str | None = None,
        state_before: Mapping[StateKey, str] | None = None,
        ts: int | None = None,
        key: ServerSigningKey | None = None,
        server: str | None = None,
    ) -> Event:
        """Build and sign an event on top of `prev` (the state before it is the state after the
        single prev event unless given), remember it, and return it. `server` and `key`: sign as
        another server (an event this one relays)."""
        if state_before is None:
            assert len(prev) == 1, "give state_before for an event with several prev events"
            state_before = self.state_after(prev[0])
        keys = auth_types_for_event(version, type=type, sender=sender, state_key=state_key, content=content)
        self._ts += 1000
        event = build_event(
            version,
            room_id=room_id,
            sender=sender,
            type=type,
            content=content,
            state_key=state_key,
            prev_event_ids=list(prev),
            auth_event_ids=[state_before[k] for k in keys if k in state_before],
            depth=max(self.events[p].depth for p in prev) + 1,
            origin_server_ts=ts if ts is not None else self._ts,
            server_name=server or self.name,
            signing_key=key or self.key,
        )
        self.learn(event, state_before)
        return event

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    def join(self, version: RoomVersion, room_id: str, localpart: str, prev: Sequence[str]) -> Event:
        user = self.user(localpart)
        return self.make(version, room_id, user, c.MEMBER, {"membership": c.JOIN}, prev=prev, state_key=user)

    # -- sending ----------------------------------------------------------------------------------

    async def send(
        self,
        client: Any,
        pdus: Sequence[Mapping[str, Any]],
        edus: Sequence[Mapping[str, Any]] = (),
        *,
        txn_id: str | None = None,
    ) -> tuple[int, Any]:
        """PUT /send/{txnId} to the app under test, signed as this server."""
        txn_id = txn_id or f"txn{next(_txn_counter)}"
        body: dict[str, Any] = {"origin": self.name, "origin_server_ts": self._ts, "pdus": list(pdus)}
        if edus:
            body["edus"] = list(edus)
        return await self.send_body(client, body, txn_id=txn_id)

    async def send_body(self, client: Any, body: Any, *, txn_id: str | None = None) -> tuple[int, Any]:
        """PUT /send/{txnId} with any body (for malformed transactions)."""
        txn_id = txn_id or f"txn{next(_txn_counter)}"
        path = f"/_matrix/federation/v1/send/{txn_id}"
        header = sign_request(
            self.key, origin=self.name, destination=OUR_SERVER, method="PUT", uri=path, content=body
        )
        resp = await client.put(URL(path, encoded=True), json=body, headers={"Authorization": header})
        return resp.status, await resp.json()
