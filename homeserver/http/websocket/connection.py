"""One WebSocket sync connection: authentication, the pushed sync frames, client requests, closing.

The request's own task reads client frames and serves at most `max_inflight_requests` of them at
once (beyond that it stops reading, so TCP pushes back on the client). Sync frames come from a
`SyncPushStream`, which holds no task while idle and computes the next frame only after the
previous one was written. All writes are serialised by a lock; a frame that does not drain within
`send_timeout_s` means the client stopped reading, and the connection is dropped (the client
resumes from its last token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import WSMsgType, web

from homeserver.core import json as hjson
from homeserver.core.errors import MatrixError
from homeserver.core.tokens import StreamToken
from homeserver.http.auth import extract_access_token
from homeserver.http.metrics import note_client
from homeserver.http.params import check_path_and_query, query_bool, query_int
from homeserver.http.requester import Requester
from homeserver.http.websocket import protocol as p
from homeserver.http.websocket.dispatch import dispatch
from homeserver.sync import metrics as sync_metrics
from homeserver.sync.live import SyncPushStream, new_connection_id
from homeserver.sync.service import SyncRequest

if TYPE_CHECKING:
    from homeserver.container import Services

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 10 * 1024 * 1024
MAX_WAIT_MS = 5 * 60 * 1000


def wants_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


class _Params:
    """/sync's query parameters, checked before authentication (no token needed to refuse them)."""

    __slots__ = ("device_id", "filter", "full_state", "set_presence", "since", "timeout_ms", "user_id")

    def __init__(self, request: web.Request) -> None:
        query = request.query
        check_path_and_query(request.match_info, query.items())  # as for every route
        since_raw = query.get("since")
        self.since = StreamToken.parse(since_raw) if since_raw else None
        self.timeout_ms = query_int(query, "timeout", None, minimum=1000, maximum=MAX_WAIT_MS)
        self.full_state = query_bool(query, "full_state")
        self.set_presence = query.get("set_presence")
        if self.set_presence is not None and self.set_presence not in ("offline", "online", "unavailable"):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid set_presence")
        self.filter = query.get("filter")
        self.user_id = query.get("user_id")  # appservice masquerading, as on every endpoint
        self.device_id = query.get("device_id")


class SyncWebSocket:
    # Thousands of these stay open at once: slots, and sets made only when first needed.
    __slots__ = (
        "_closing",
        "_expiry",
        "_params",
        "_requester",
        "_send_lock",
        "_side_tasks",
        "_slots",
        "_stream",
        "_tasks",
        "_token",
        "connection_id",
        "frames_sent",
        "hub",
        "last_sent_token",
        "max_body",
        "request",
        "services",
        "settings",
        "token_hash",
        "user_id",
        "ws",
    )

    def __init__(self, request: web.Request, services: Services) -> None:
        self.request = request
        self.services = services
        self.hub = services.live_sync
        self.settings = self.hub.settings
        self.max_body = services.config.max_request_body_size or DEFAULT_MAX_BODY
        self.ws = web.WebSocketResponse(
            protocols=(p.SUBPROTOCOL,),
            heartbeat=self.settings.heartbeat_s,
            max_msg_size=self.max_body,
            # No permessage-deflate: aiohttp keeps a zlib compressor per connection once a frame
            # was sent (~260 KiB each: docs/websocket.md, "Cost"), and an inflater once the
            # client sent a compressed frame. Browsers offer the extension; it is declined.
            compress=False,
        )
        self.connection_id = new_connection_id()
        self.user_id = ""
        self.token_hash: str | None = None
        self._token = ""
        self._requester: Requester | None = None
        self._params: _Params | None = None
        self._send_lock = asyncio.Lock()
        self._slots: asyncio.Semaphore | None = None  # made at the first client request
        self._tasks: set[asyncio.Task[Any]] | None = None  # client requests being served
        self._side_tasks: set[asyncio.Task[Any]] | None = None  # token checks, closes
        self._stream: SyncPushStream | None = None
        self._closing = False
        self._expiry: asyncio.TimerHandle | None = None
        self.frames_sent = 0
        self.last_sent_token: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def serve(self) -> web.WebSocketResponse:
        ws = self.ws
        await ws.prepare(self.request)
        try:
            self._params = _Params(self.request)
            token = self._offered_token()
        except MatrixError as err:
            await self._fail(err, p.CloseCode.BAD_REQUEST if err.status == 400 else p.CloseCode.UNAUTHORIZED)
            return ws
        if token is None:
            token = await self._auth_frame()
            if token is None:
                return ws
        if not await self._authenticate(token):
            return ws
        assert self._requester is not None
        try:
            template = await self._template(self._requester)
        except MatrixError as err:
            await self._fail(err, p.CloseCode.BAD_REQUEST)
            return ws
        stream = SyncPushStream(
            self.services.sync,
            template,
            self.connection_id,
            self._params.timeout_ms / 1000
            if self._params and self._params.timeout_ms
            else self.settings.max_wait_s,
            self._deliver,
            self._stream_stopped,
        )
        self._stream = stream
        self.hub.add(self)
        try:
            await self._send(
                {
                    "type": "ready",
                    "connection_id": self.connection_id,
                    "user_id": self._requester.user_id,
                    "device_id": self._requester.device_id,
                }
            )
            await stream.start()
            await self._read_loop()
        finally:
            self._closing = True
            self.hub.remove(self)
            if self._expiry is not None:
                self._expiry.cancel()
            stream.close()
            for task in list(self._tasks or ()):
                task.cancel()
            if self._side_tasks:  # a close in progress finishes its handshake
                await asyncio.wait(list(self._side_tasks), timeout=5.0)
            if not ws.closed:
                await ws.close()
        return ws

    def _offered_token(self) -> str | None:
        """The token from the Authorization header (or `access_token`), else a token subprotocol."""
        token = extract_access_token(self.request)
        if token is not None:
            return token
        for offered in self.request.headers.getall("Sec-WebSocket-Protocol", []):
            for proto in offered.split(","):
                proto = proto.strip()
                if proto.startswith(p.TOKEN_SUBPROTOCOL_PREFIX):
                    return proto[len(p.TOKEN_SUBPROTOCOL_PREFIX) :] or None
        return None

    async def _auth_frame(self) -> str | None:
        """A browser that could send no header: the first frame must be `{"type": "auth", ...}`."""
        try:
            msg = await self.ws.receive(timeout=self.settings.auth_timeout_s)
        except TimeoutError:
            await self._fail(
                MatrixError(401, "M_MISSING_TOKEN", "No auth frame received in time"), p.CloseCode.TIMEOUT
            )
            return None
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None  # the client went away
        frame = None
        if msg.type == WSMsgType.TEXT:
            with contextlib.suppress(ValueError):
                frame = hjson.loads(msg.data)
        token = frame.get("access_token") if isinstance(frame, dict) and frame.get("type") == "auth" else None
        if not isinstance(token, str) or not token:
            await self._fail(
                MatrixError(401, "M_MISSING_TOKEN", "The first frame must be an auth frame"),
                p.CloseCode.UNAUTHORIZED,
            )
            return None
        return token

    async def _authenticate(self, token: str) -> bool:
        assert self._params is not None
        services = self.services
        try:
            requester = await services.auth.get_requester_for_token(
                token, self._params.user_id, self._params.device_id
            )
        except MatrixError as err:
            await self._fail(err, p.CloseCode.UNAUTHORIZED if err.status == 401 else p.CloseCode.BAD_REQUEST)
            return False
        self._token = token
        self._requester = requester
        self.user_id = requester.user_id
        self.token_hash = requester.token_hash
        expires = services.auth.expires_at_ms(token)
        if expires is not None:
            # A refreshable token: closed (soft logout) when it expires; the client refreshes
            # and reconnects from its last token.
            delay = max(0.0, (expires - services.clock.time_ms()) / 1000) + 0.01
            self._expiry = asyncio.get_running_loop().call_later(delay, self.revalidate)
        agent = self.request.headers.get("User-Agent")
        services.client_ips.record(requester, self.request.remote, agent)
        note_client(self.request.remote, requester.user_id)
        return True

    async def _template(self, requester: Requester) -> SyncRequest:
        params = self._params
        assert params is not None
        return SyncRequest(
            user_id=requester.user_id,
            device_id=requester.device_id,
            since=params.since,
            timeout_ms=params.timeout_ms or MAX_WAIT_MS,
            full_state=params.full_state,
            filter=await self.services.filters.sync_filter(requester, params.filter),
            set_presence=params.set_presence,
            filter_key=params.filter or "",
        )

    # -- server -> client ------------------------------------------------------------------------

    async def _deliver(self, response: dict[str, Any]) -> bool:
        """Write one sync frame; False when the connection is gone or the client stopped reading."""
        try:
            written = await self._send({"type": "sync", "body": response}, self.settings.send_timeout_s)
        except (ConnectionError, RuntimeError):
            return False
        if not written:
            reason = f"stopped reading; resume from {self.last_sent_token or ''}"
            self._spawn(self._close(p.CloseCode.TIMEOUT, reason, force=True))
            return False
        self.last_sent_token = response["next_batch"]
        sync_metrics.websocket_frames.inc()
        return True

    def _stream_stopped(self, error: BaseException | None) -> None:
        if isinstance(error, MatrixError):  # e.g. a `since` token from the future
            self._spawn(self._fail(error, p.CloseCode.BAD_REQUEST))
        elif error is not None:
            logger.error("WebSocket sync push failed", exc_info=error)
            self._spawn(self._close(p.CloseCode.INTERNAL_ERROR, "internal error"))
        elif self.services.notifier.closed:
            self._spawn(self._close(p.CloseCode.GOING_AWAY, "server shutting down"))

    async def _send(self, frame: dict[str, Any], drain_s: float | None = None) -> bool:
        """Write one frame; False when it did not drain within `drain_s` (a stalled reader)."""
        data = hjson.dumps(frame)
        async with self._send_lock:
            if self.ws.closed:
                raise ConnectionResetError("WebSocket closed")
            try:
                await asyncio.wait_for(self.ws.send_frame(data, WSMsgType.TEXT), drain_s)
            except TimeoutError:
                return False
            self.frames_sent += 1
        return True

    async def _fail(self, err: MatrixError, code: p.CloseCode) -> None:
        """Tell the client why in an error frame, then close with `code` and the errcode."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send({"type": "error", "error": err.to_body()}, 5.0)
        await self._close(code, err.errcode)

    async def _close(self, code: int, reason: str, force: bool = False) -> None:
        self._closing = True
        if self.ws.closed:
            return
        sync_metrics.websocket_closes.labels(str(code)).inc()
        if force:
            # The client is not reading: a close frame would only queue behind the stalled one.
            transport = self.request.transport
            if transport is not None:
                transport.abort()
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.CancelledError):
            await self.ws.close(code=code, message=p.close_reason(reason).encode())

    # -- client -> server ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        # `receive()` directly rather than `async for`: one coroutine frame less per idle socket.
        receive = self.ws.receive
        while True:
            msg = await receive()
            if msg.type == WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self._send_error(None, MatrixError(400, "M_NOT_JSON", "Frames must be JSON text"))
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return

    async def _on_text(self, data: str) -> None:
        try:
            frame = hjson.loads(data)
        except ValueError:
            await self._send_error(None, MatrixError(400, "M_NOT_JSON", "Frame is not JSON"))
            return
        if not isinstance(frame, dict):
            await self._send_error(None, MatrixError(400, "M_BAD_JSON", "Frame must be a JSON object"))
            return
        request_id = frame.get("id")
        kind = frame.get("type")
        if kind == "ping":
            await self._send({"type": "pong", **({"id": request_id} if request_id is not None else {})})
            return
        if kind not in p.REQUEST_TYPES:
            err = MatrixError(400, "M_UNRECOGNIZED", f"Unknown frame type {kind!r}")
            await self._send_error(request_id, err)
            return
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            await self._send_error(None, MatrixError(400, "M_MISSING_PARAM", "A request needs an 'id'"))
            return
        if kind == "typing":
            frame.setdefault("user_id", self.user_id)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_inflight_requests)
            self._tasks = set()
        assert self._tasks is not None
        await self._slots.acquire()  # beyond the limit, stop reading: the client waits
        task = asyncio.ensure_future(self._serve_request(request_id, frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_request(self, request_id: str | int, frame: dict[str, Any]) -> None:
        try:
            try:
                method, path, body = p.request_of(frame)
                path = self._with_masquerade(path)
                status, result = await dispatch(self.request, method, path, body, self._token, self.max_body)
            except MatrixError as err:
                status, result = err.status, err.to_body()
            sync_metrics.websocket_requests.labels(f"{status // 100}xx").inc()
            answer: dict[str, Any] = {"type": "response", "id": request_id, "status": status}
            answer["result" if status < 400 else "error"] = result
            with contextlib.suppress(ConnectionError):
                await self._send(answer, self.settings.send_timeout_s)
        finally:
            assert self._slots is not None
            self._slots.release()

    def _with_masquerade(self, path: str) -> str:
        """An appservice connection acting as a user acts as that user in its requests too."""
        params = self._params
        if params is None or params.user_id is None or "user_id=" in path:
            return path
        sep = "&" if "?" in path else "?"
        return f"{path}{sep}user_id={quote(params.user_id, safe='')}"

    async def _send_error(self, request_id: Any, err: MatrixError) -> None:
        frame: dict[str, Any] = {"type": "error", "error": err.to_body()}
        if request_id is not None:
            frame = {"type": "response", "id": request_id, "status": err.status, "error": err.to_body()}
        with contextlib.suppress(ConnectionError):
            await self._send(frame)

    # -- LiveConnection --------------------------------------------------------------------------

    def revalidate(self) -> None:
        self._spawn(self._revalidate())

    async def _revalidate(self) -> None:
        assert self._params is not None
        try:
            await self.services.auth.get_requester_for_token(
                self._token, self._params.user_id, self._params.device_id
            )
        except MatrixError as err:
            await self._fail(err, p.CloseCode.TOKEN_REVOKED)

    async def shutdown(self) -> None:
        await self._close(p.CloseCode.GOING_AWAY, "server shutting down")

    def _spawn(self, coro: Any) -> None:
        if self._side_tasks is None:
            self._side_tasks = set()
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)


async def serve_sync_websocket(request: web.Request, services: Services) -> web.StreamResponse:
    return await SyncWebSocket(request, services).serve()
