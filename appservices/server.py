"""The appservice's side of the application-service API: an aiohttp app the homeserver calls.

`PUT /_matrix/app/v1/transactions/{txnId}` checks the `hs_token` (Authorization: Bearer, or the
legacy `access_token` query parameter), skips transactions already handled (persistently, see
txn_store.py) and dispatches each event to the handlers registered for its type; ping and the
users/rooms queries are answered too. Legacy unprefixed paths (`/transactions/{txnId}` ...) are
served as well for homeservers that still use them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from appservices.state import StateStore
from appservices.txn_store import TransactionStore

logger = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
QueryHandler = Callable[[str], Awaitable[bool]]


def _error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


class AppServiceServer:
    def __init__(
        self, hs_token: str, txn_store: TransactionStore | None = None, state: StateStore | None = None
    ) -> None:
        self.hs_token = hs_token
        self.txns = txn_store or TransactionStore()
        self.state = state or StateStore()
        self._handlers: dict[str, list[EventHandler]] = {}
        self._ephemeral: list[EventHandler] = []
        self._to_device: list[EventHandler] = []
        self.user_query: QueryHandler | None = None
        self.room_query: QueryHandler | None = None

    # -- registration of handlers --------------------------------------------------------------

    def on(self, event_type: str) -> Callable[[EventHandler], EventHandler]:
        """Decorator: call the handler for every event of `event_type` ("*": every event)."""

        def register(handler: EventHandler) -> EventHandler:
            self._handlers.setdefault(event_type, []).append(handler)
            return handler

        return register

    def on_ephemeral(self, handler: EventHandler) -> EventHandler:
        self._ephemeral.append(handler)
        return handler

    def on_to_device(self, handler: EventHandler) -> EventHandler:
        """Decorator: to-device messages for the namespace's users (MSC2409/MSC4203), each with
        `to_user_id` and `to_device_id`."""
        self._to_device.append(handler)
        return handler

    # -- HTTP ------------------------------------------------------------------------------------

    def _check_token(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = (
            header[7:].strip() if header.lower().startswith("bearer ") else request.query.get("access_token")
        )
        if not token:
            return _error(401, "M_UNAUTHORIZED", "Missing hs_token")
        if token != self.hs_token:
            return _error(403, "M_FORBIDDEN", "Bad hs_token")
        return None

    async def _dispatch(self, event: dict[str, Any]) -> None:
        self.state.update(event)
        for handler in self._handlers.get(str(event.get("type")), []) + self._handlers.get("*", []):
            try:
                await handler(event)
            except Exception:  # one broken handler must not make the homeserver resend everything
                logger.exception("handler failed for event %s", event.get("event_id"))

    async def handle_transaction(self, request: web.Request) -> web.Response:
        if (denied := self._check_token(request)) is not None:
            return denied
        txn_id = request.match_info["txnId"]
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "M_NOT_JSON", "Body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("events", []), list):
            return _error(400, "M_BAD_JSON", "Expected an object with an 'events' list")
        if self.txns.seen(txn_id):
            return web.json_response({})
        for event in body.get("events", []):
            if isinstance(event, dict):
                await self._dispatch(event)
        ephemeral = body.get("ephemeral", body.get("de.sorunome.msc2409.ephemeral", []))
        for edu in ephemeral if isinstance(ephemeral, list) else []:
            for handler in self._ephemeral:
                await handler(edu)
        to_device = body.get("to_device", body.get("de.sorunome.msc2409.to_device", []))
        for message in to_device if isinstance(to_device, list) else []:
            for handler in self._to_device:
                await handler(message)
        self.txns.mark(txn_id)
        return web.json_response({})

    async def handle_ping(self, request: web.Request) -> web.Response:
        if (denied := self._check_token(request)) is not None:
            return denied
        return web.json_response({})

    async def _query(self, request: web.Request, handler: QueryHandler | None, key: str) -> web.Response:
        if (denied := self._check_token(request)) is not None:
            return denied
        if handler is not None and await handler(request.match_info[key]):
            return web.json_response({})
        return _error(404, "M_NOT_FOUND", "Not known to this application service")

    async def handle_user_query(self, request: web.Request) -> web.Response:
        return await self._query(request, self.user_query, "userId")

    async def handle_room_query(self, request: web.Request) -> web.Response:
        return await self._query(request, self.room_query, "alias")

    def make_app(self) -> web.Application:
        app = web.Application()
        for prefix in ("/_matrix/app/v1", ""):
            app.router.add_put(prefix + "/transactions/{txnId}", self.handle_transaction)
            app.router.add_get(prefix + "/users/{userId}", self.handle_user_query)
            app.router.add_get(prefix + "/rooms/{alias}", self.handle_room_query)
        app.router.add_post("/_matrix/app/v1/ping", self.handle_ping)
        return app
