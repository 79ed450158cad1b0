"""A reference client for sync over a WebSocket (docs/websocket.md); aiohttp only.

    async with WebSocketSync(base_url, access_token, since=token) as conn:
        await conn.send_message(room_id, {"msgtype": "m.text", "body": "hi"}, txn_id="t1")
        body = await conn.next_sync()        # a /sync response, pushed by the server
        ...
    # reconnect later from conn.next_batch: nothing lost, nothing twice

One connection at a time; `WebSocketSync.connect()` opens it (again, after a drop, from the last
`next_batch` handed out by `next_sync`). Sync frames are queued here in arrival order (the server
coalesces while the client reads slowly, so the queue stays short); responses to requests resolve
the future of their `id`. Never logs the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote, urlencode

import aiohttp

from appservices.intent import MatrixRequestError

STABLE_PATH = "/_matrix/client/v3/sync"
UNSTABLE_PATH = "/_matrix/client/unstable/org.homeserver.ws/sync"
SUBPROTOCOL = "org.homeserver.ws.v1"
TOKEN_SUBPROTOCOL_PREFIX = "org.homeserver.ws.token."

AuthMode = Literal["header", "frame", "subprotocol"]


class ConnectionClosed(Exception):
    """The socket closed; `code` and `reason` as the server sent them (None if it just dropped)."""

    def __init__(self, code: int | None, reason: str, error: Mapping[str, Any] | None = None) -> None:
        self.code = code
        self.reason = reason
        self.error = dict(error) if error else None
        super().__init__(f"WebSocket closed: {code} {reason}")


class WebSocketSync:
    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        since: str | None = None,
        filter: str | Mapping[str, Any] | None = None,
        set_presence: str | None = None,
        full_state: bool = False,
        timeout_ms: int | None = None,
        auth: AuthMode = "header",
        path: str = UNSTABLE_PATH,
        session: aiohttp.ClientSession | None = None,
        heartbeat: float | None = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = access_token
        self.next_batch = since
        self.filter = json.dumps(filter, separators=(",", ":")) if isinstance(filter, Mapping) else filter
        self.set_presence = set_presence
        self.full_state = full_state
        self.timeout_ms = timeout_ms
        self.auth = auth
        self.path = path
        self.heartbeat = heartbeat
        self._session = session
        self._own_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._syncs: asyncio.Queue[dict[str, Any] | ConnectionClosed] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.ready: dict[str, Any] | None = None
        self.last_error: dict[str, Any] | None = None
        self.closed: ConnectionClosed | None = None

    async def __aenter__(self) -> WebSocketSync:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connection ------------------------------------------------------------------------------

    def url(self) -> str:
        params: dict[str, str] = {}
        if self.next_batch:
            params["since"] = self.next_batch
        if self.filter:
            params["filter"] = self.filter
        if self.set_presence:
            params["set_presence"] = self.set_presence
        if self.full_state:
            params["full_state"] = "true"
        if self.timeout_ms is not None:
            params["timeout"] = str(self.timeout_ms)
        return f"{self.base_url}{self.path}" + (f"?{urlencode(params)}" if params else "")

    async def connect(self) -> dict[str, Any]:
        """Open the socket (from `next_batch`), authenticate; returns the server's `ready` frame.
        Raises ConnectionClosed when the server refuses (bad token: code 4401)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers: dict[str, str] = {}
        protocols: tuple[str, ...] = (SUBPROTOCOL,)
        if self.auth == "header":
            headers["Authorization"] = f"Bearer {self._token}"
        elif self.auth == "subprotocol":
            protocols = (SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + self._token)
        await self._discard_connection()
        self._syncs = asyncio.Queue()
        self.closed = None
        self.ready = None
        ws = await self._session.ws_connect(
            self.url(), headers=headers, protocols=protocols, heartbeat=self.heartbeat, max_msg_size=0
        )
        self._ws = ws
        if self.auth == "frame":
            await ws.send_str(json.dumps({"type": "auth", "access_token": self._token}))
        ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read(ws, ready, self._syncs, self._pending))
        return await ready

    async def _discard_connection(self) -> None:
        """Before reconnecting: end the previous socket and its reader, whose unread frames are
        dropped (the new connection resumes from `next_batch`, before them)."""
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        if ws is not None and not ws.closed:
            self.drop_socket(ws)
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 5)
        self._pending = {}

    async def _read(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        ready: asyncio.Future[dict[str, Any]],
        syncs: asyncio.Queue[dict[str, Any] | ConnectionClosed],
        pending: dict[str, asyncio.Future[dict[str, Any]]],
    ) -> None:
        """One connection's frames, into that connection's queue and futures only."""
        reason = ""
        try:
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")
                    break
                if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                kind = frame.get("type")
                if kind == "sync":
                    syncs.put_nowait(frame["body"])
                elif kind in ("response", "pong"):
                    fut = pending.pop(str(frame.get("id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                elif kind == "ready":
                    self.ready = frame
                    if not ready.done():
                        ready.set_result(frame)
                elif kind == "error":
                    self.last_error = frame.get("error")
        finally:
            closed = ConnectionClosed(ws.close_code, reason, self.last_error)
            if self._ws is ws:
                self.closed = closed
            if not ready.done():
                ready.set_exception(closed)
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(closed)
            pending.clear()
            syncs.put_nowait(closed)

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def drop(self) -> None:
        """Kill the connection without a close handshake (tests: a network failure)."""
        if self._ws is not None:
            self.drop_socket(self._ws)

    @staticmethod
    def drop_socket(ws: aiohttp.ClientWebSocketResponse) -> None:
        connection = ws._response.connection
        transport = connection.transport if connection is not None else None
        if transport is not None:
            transport.abort()

    # -- server -> client ------------------------------------------------------------------------

    async def next_sync(self, wait_s: float | None = None) -> dict[str, Any]:
        """The next pushed /sync response; remembers its `next_batch` as the resume point.
        Raises ConnectionClosed once the socket closed and every frame before was handed out."""
        item = await asyncio.wait_for(self._syncs.get(), wait_s)
        if isinstance(item, ConnectionClosed):
            self._syncs.put_nowait(item)  # stays closed for later calls
            raise item
        self.next_batch = item["next_batch"]
        return item

    # -- client -> server ------------------------------------------------------------------------

    async def _call(self, frame: dict[str, Any]) -> dict[str, Any]:
        if self._ws is None or self.closed is not None:
            raise self.closed or ConnectionClosed(None, "not connected")
        request_id = str(next(self._ids))
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            await self._ws.send_str(json.dumps({**frame, "id": request_id}))
        except (ConnectionError, aiohttp.ClientError) as exc:
            # The socket died under us; the reader reports the close a moment later.
            self._pending.pop(request_id, None)
            raise ConnectionClosed(None, f"connection lost: {exc}") from exc
        return await fut

    async def _result(self, frame: dict[str, Any]) -> dict[str, Any]:
        answer = await self._call(frame)
        if answer["status"] >= 400:
            raise MatrixRequestError(answer["status"], answer.get("error"))
        result: dict[str, Any] = answer.get("result") or {}
        return result

    async def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Any client-server request (path from `/_matrix/client/`, with its query string)."""
        frame: dict[str, Any] = {"type": "request", "method": method, "path": path}
        if body is not None:
            frame["body"] = dict(body)
        return await self._result(frame)

    async def send_message(
        self, room_id: str, content: Mapping[str, Any], txn_id: str, event_type: str = "m.room.message"
    ) -> str:
        frame = {
            "type": "send",
            "room_id": room_id,
            "event_type": event_type,
            "txn_id": txn_id,
            "content": dict(content),
        }
        return str((await self._result(frame))["event_id"])

    async def typing(self, room_id: str, typing: bool, timeout_ms: int = 30_000) -> None:
        frame: dict[str, Any] = {"type": "typing", "room_id": room_id, "typing": typing}
        if typing:
            frame["timeout"] = timeout_ms
        await self._result(frame)

    async def receipt(self, room_id: str, event_id: str, receipt_type: str = "m.read") -> None:
        await self._result(
            {"type": "receipt", "room_id": room_id, "event_id": event_id, "receipt_type": receipt_type}
        )

    async def read_markers(self, room_id: str, fully_read: str, read: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "read_markers", "room_id": room_id, "m.fully_read": fully_read}
        if read is not None:
            frame["m.read"] = read
        await self._result(frame)

    async def ping(self) -> None:
        await self._call({"type": "ping"})

    async def messages(
        self, room_id: str, from_token: str, direction: str = "b", limit: int = 100
    ) -> dict[str, Any]:
        """/messages over the socket: fill the gap a `limited` timeline leaves."""
        query = urlencode({"from": from_token, "dir": direction, "limit": str(limit)})
        path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages?{query}"
        return await self.request("GET", path)
