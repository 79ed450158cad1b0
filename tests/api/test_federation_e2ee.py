"""E2EE across servers, in process: remote device lists kept by m.device_list_update EDUs (in order
by prev_id, resync through GET /user/devices on a gap), m.signing_key_update, a local client's
/keys/query and /keys/claim for remote users (answered from the cache or by the remote server, per
server failures, the timeout), and our /user/devices, /user/keys/query and /user/keys/claim as
another server sees them (X-Matrix signed).

The remote server is a small aiohttp app behind TLS with a certificate from a throwaway CA (the
federation client only speaks HTTPS); its name is the IP literal with its port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from canonicaljson import encode_canonical_json
from nacl.signing import SigningKey
from signedjson.key import generate_signing_key
from yarl import URL

from homeserver.app import create_app_from_config
from homeserver.config.sections import HomeserverConfig
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.request_auth import sign_request
from homeserver.persist.local import EventDraft
from synapse_compat_tests.spec_schema import assert_matches_spec, definition_ref, validate

from ..clients.test_federation_tls import make_ca_and_leaf
from ..conftest import services_of
from .ephemeral_helpers import V3, User, q
from .test_e2ee import Device

SERVER = "test.local"
ORIGIN = "remote.example"  # the server that calls our federation endpoints
ORIGIN_KEY = ServerSigningKey.from_signing_key(generate_signing_key("r1"))
FED = "/_matrix/federation/v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


class CrossSigning:
    """A user's master and self-signing keys."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.master = SigningKey.generate()
        self.ssk = SigningKey.generate()

    @staticmethod
    def _public(key: SigningKey) -> str:
        return _b64(bytes(key.verify_key))

    def master_key(self) -> dict[str, Any]:
        public = self._public(self.master)
        return {"user_id": self.user_id, "usage": ["master"], "keys": {f"ed25519:{public}": public}}

    def self_signing_key(self) -> dict[str, Any]:
        public = self._public(self.ssk)
        key = {"user_id": self.user_id, "usage": ["self_signing"], "keys": {f"ed25519:{public}": public}}
        sig = _b64(self.master.sign(encode_canonical_json(key)).signature)
        master_id = f"ed25519:{self._public(self.master)}"
        return {**key, "signatures": {self.user_id: {master_id: sig}}}

    def user_signing_key(self) -> dict[str, Any]:
        self.usk = getattr(self, "usk", None) or SigningKey.generate()
        public = self._public(self.usk)
        key = {"user_id": self.user_id, "usage": ["user_signing"], "keys": {f"ed25519:{public}": public}}
        sig = _b64(self.master.sign(encode_canonical_json(key)).signature)
        return {**key, "signatures": {self.user_id: {f"ed25519:{self._public(self.master)}": sig}}}

    def sign_with_usk(self, obj: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        sig = _b64(self.usk.sign(encode_canonical_json(data)).signature)
        key_id = f"ed25519:{self._public(self.usk)}"
        return {**obj, "signatures": {self.user_id: {key_id: sig}}}


class FakeRemote:
    """The parts of another homeserver's federation API that key tracking calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.devices: dict[str, Any] = {}  # user -> GET /user/devices answer
        self.devices_status = 200
        self.query_answer: dict[str, Any] = {"device_keys": {}}
        self.claim_answer: dict[str, Any] = {"one_time_keys": {}}
        self.delay = 0.0
        self.name = ""
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()  # ends the delays at stop

    async def start(self, context: ssl.SSLContext) -> FakeRemote:
        app = web.Application()
        app.router.add_get(FED + "/user/devices/{userId}", self._user_devices)
        app.router.add_post(FED + "/user/keys/query", self._keys_query)
        app.router.add_post(FED + "/user/keys/claim", self._keys_claim)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.name = f"127.0.0.1:{port}"
        return self

    async def _wait(self) -> None:
        if self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), self.delay)

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    async def _user_devices(self, request: web.Request) -> web.Response:
        user_id = request.match_info["userId"]
        self.calls.append(("devices", user_id))
        assert request.headers["Authorization"].startswith("X-Matrix ")
        if self.devices_status != 200:
            return web.json_response({"errcode": "M_UNKNOWN"}, status=self.devices_status)
        return web.json_response(self.devices[user_id])

    async def _keys_query(self, request: web.Request) -> web.Response:
        self.calls.append(("query", await request.json()))
        await self._wait()
        return web.json_response(self.query_answer)

    async def _keys_claim(self, request: web.Request) -> web.Response:
        self.calls.append(("claim", await request.json()))
        await self._wait()
        return web.json_response(self.claim_answer)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_leaf(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def remotes(certs: tuple[Path, Path, Path]) -> AsyncIterator[list[FakeRemote]]:
    _, chain, key = certs
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(chain), str(key))
    started = [await FakeRemote().start(context) for _ in range(2)]
    yield started
    for remote in started:
        await remote.stop()


@pytest.fixture
async def hs(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig], certs: tuple[Path, Path, Path]
) -> Any:
    ca, _, _ = certs
    config = engine_config(
        federation_custom_ca_list=[str(ca)],
        ip_range_whitelist=["127.0.0.0/8"],
        trusted_key_servers=[],
    )
    client = await aiohttp_client(create_app_from_config(config))
    services_of(client).keyring = InMemoryKeyring(
        (ServerVerifyKey(ORIGIN, ORIGIN_KEY.key_id, ORIGIN_KEY.verify_key, 2**62),)
    )
    return client


async def remote_join(client: Any, room_id: str, user_id: str) -> None:
    await services_of(client).persister.send_one(
        EventDraft(room_id, "m.room.member", user_id, {"membership": "join"}, state_key=user_id)
    )


async def dispatch(client: Any, origin: str, edu_type: str, content: Any) -> None:
    await services_of(client).federation_edus.dispatch(origin, edu_type, content)


EDU_SCHEMA = "definitions/event-schemas/m.device_list_update.yaml"


def update(
    user_id: str, device: Device | str, stream_id: int, prev: list[int], **extra: Any
) -> dict[str, Any]:
    content: dict[str, Any] = {"user_id": user_id, "stream_id": stream_id, "prev_id": prev}
    if isinstance(device, Device):
        content.update(device_id=device.device_id, keys=device.device_keys())
    else:
        content["device_id"] = device
    return {**content, **extra}


def test_update_helper_makes_spec_edus() -> None:
    edu = {
        "edu_type": "m.device_list_update",
        "content": update("@a:b.example", Device("@a:b.example", "D"), 2, [1]),
    }
    validate(definition_ref(EDU_SCHEMA, api="server-server"), edu, "m.device_list_update EDU")


async def query(user: User, device_keys: dict[str, list[str]], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = await user.post(f"{V3}/keys/query", {"device_keys": device_keys, **extra})
    assert_matches_spec("keys.yaml", "/keys/query", "POST", 200, body)
    return body


def device_calls(remote: FakeRemote) -> int:
    return sum(1 for kind, _ in remote.calls if kind == "devices")


async def test_device_list_updates_in_order_and_resync_on_gaps(hs: Any, remotes: list[FakeRemote]) -> None:
    remote = remotes[0]
    bob = remote.user("bob")
    alice = await User.new(hs)
    room_id = await alice.create_room()
    await remote_join(hs, room_id, bob)
    stream = alice.stream()
    await stream.sync()

    d1, d2, d3, d4 = (Device(bob, f"D{i}") for i in range(1, 5))
    cross = CrossSigning(bob)
    remote.devices[bob] = {
        "user_id": bob,
        "stream_id": 6,
        "devices": [
            {"device_id": "D1", "keys": d1.device_keys(), "device_display_name": "phone"},
            {"device_id": "D2", "keys": d2.device_keys()},
            {"device_id": "NOKEYS"},
        ],
        "master_key": cross.master_key(),
        "self_signing_key": cross.self_signing_key(),
    }
    # The first update about bob: we do not track him yet, so his whole list is fetched.
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, d2, 6, [5]))
    assert remote.calls == [("devices", bob)]
    body = await stream.sync(timeout_ms=10_000)
    assert bob in body["device_lists"]["changed"]

    keys = await query(alice, {bob: []})
    assert set(keys["device_keys"][bob]) == {"D1", "D2"}
    assert keys["device_keys"][bob]["D1"]["unsigned"] == {"device_display_name": "phone"}
    assert keys["device_keys"][bob]["D2"]["keys"] == d2.device_keys()["keys"]
    assert keys["master_keys"][bob] == cross.master_key()
    assert keys["self_signing_keys"][bob] == cross.self_signing_key()
    assert keys["failures"] == {}
    assert len(remote.calls) == 1, "answered from the cache"
    assert set((await query(alice, {bob: ["D1", "nope"]}))["device_keys"][bob]) == {"D1"}

    # Updates that follow the extremity apply in order without asking the remote server.
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, d3, 7, [6]))
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, "D1", 8, [7], deleted=True))
    assert set((await query(alice, {bob: []}))["device_keys"][bob]) == {"D2", "D3"}
    body = await stream.sync(timeout_ms=10_000)
    assert bob in body["device_lists"]["changed"]
    # A retransmitted update changes nothing and asks nothing.
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, d3, 7, [6]))
    services_of(hs).remote_devices._seen.clear()  # as after a restart: only the stored extremity
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, d4, 9, [8]))
    assert set((await query(alice, {bob: []}))["device_keys"][bob]) == {"D2", "D3", "D4"}
    assert device_calls(remote) == 1

    # Ignored: another server's user, a user nobody here shares a room with, malformed updates.
    carol = remote.user("carol")
    remote.devices[carol] = {"user_id": carol, "stream_id": 1, "devices": []}
    await dispatch(hs, "other.example", "m.device_list_update", update(bob, "D9", 10, [9]))
    await dispatch(hs, remote.name, "m.device_list_update", update(carol, "D9", 2, [1]))
    wrong_keys = update(bob, d4, 10, [9])
    wrong_keys["device_id"] = "D5"  # keys of D4 under another device id
    for bad in (
        wrong_keys,
        update(bob, "D9", "10", [9]),  # type: ignore[arg-type]
        update(bob, "D9", 10, ["9"]),  # type: ignore[list-item]
        update(bob, "D9", 10, [9], deleted="yes"),
        update(bob, "D9", 10, [9], keys="nonsense"),
        {"user_id": "not a user"},
        {},
    ):
        await dispatch(hs, remote.name, "m.device_list_update", bad)
    assert device_calls(remote) == 1
    assert set((await query(alice, {bob: []}))["device_keys"][bob]) == {"D2", "D3", "D4"}

    # A gap (an unknown prev_id) or an update without prev_id: resync the whole list.
    remote.devices[bob] = {
        "user_id": bob,
        "stream_id": 11,
        "devices": [{"device_id": "D4", "keys": d4.device_keys()}],
    }
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, d4, 11, [10]))
    assert device_calls(remote) == 2
    assert set((await query(alice, {bob: []}))["device_keys"][bob]) == {"D4"}
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, d4, 12, []))
    assert device_calls(remote) == 3

    # GET /keys/changes lists him too.
    since = (await alice.sync())["next_batch"]
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, d3, 12 + 1, [11]))
    upto = (await alice.sync())["next_batch"]
    changes = await alice.get(f"{V3}/keys/changes", **{"from": since, "to": upto})
    assert bob in changes["changed"]


async def test_signing_key_update(hs: Any, remotes: list[FakeRemote]) -> None:
    remote = remotes[0]
    bob = remote.user("bob")
    alice = await User.new(hs)
    room_id = await alice.create_room()
    await remote_join(hs, room_id, bob)
    stream = alice.stream()
    await stream.sync()
    cross = CrossSigning(bob)

    await dispatch(
        hs, remote.name, "m.signing_key_update", {"user_id": bob, "master_key": cross.master_key()}
    )
    body = await stream.sync(timeout_ms=10_000)
    assert bob in body["device_lists"]["changed"]
    # Not tracked yet but in a room with us: the query resyncs his devices, the master key stays.
    remote.devices[bob] = {"user_id": bob, "stream_id": 1, "devices": []}
    keys = await query(alice, {bob: []})
    assert keys["failures"] == {} and keys["master_keys"] == {bob: cross.master_key()}
    assert remote.calls == [("devices", bob)]

    services = services_of(hs)
    stored = await services.e2e_store.get_cross_signing_keys([bob])
    assert stored[(bob, "master")].key == cross.master_key()

    other = CrossSigning(bob)
    bad_usage = {**other.master_key(), "usage": ["self_signing"]}
    for origin, content in (
        ("other.example", {"user_id": bob, "master_key": other.master_key()}),  # not its user
        (remote.name, {"user_id": bob, "master_key": bad_usage}),
        (remote.name, {"user_id": bob, "master_key": {**other.master_key(), "user_id": "@x:y"}}),
        (remote.name, {"user_id": bob, "master_key": "nonsense"}),
        (
            remote.name,
            {"user_id": remote.user("carol"), "master_key": CrossSigning(remote.user("carol")).master_key()},
        ),
        (remote.name, {"user_id": 5}),
    ):
        await dispatch(hs, origin, "m.signing_key_update", content)
    stored = await services.e2e_store.get_cross_signing_keys([bob, remote.user("carol")])
    assert stored == {(bob, "master"): stored[(bob, "master")]}
    assert stored[(bob, "master")].key == cross.master_key()


async def test_failed_resync_marks_stale_and_queries_go_remote(hs: Any, remotes: list[FakeRemote]) -> None:
    remote = remotes[0]
    bob = remote.user("bob")
    alice = await User.new(hs)
    room_id = await alice.create_room()
    await remote_join(hs, room_id, bob)
    d1 = Device(bob, "D1")
    remote.devices_status = 500
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, d1, 3, [2]))
    services = services_of(hs)
    tracked = await services.remote_device_store.get_list(bob)
    assert tracked is not None and tracked.stale

    # The server is backing off now: the query lists it in `failures`.
    keys = await query(alice, {bob: [], alice.user_id: []})
    assert keys["failures"][remote.name]["status"] == 503
    assert alice.user_id in keys["device_keys"]

    # Back again: the next query resyncs (we share a room) and answers from the cache.
    await services.destinations.record_success(remote.name)
    remote.devices_status = 200
    remote.devices[bob] = {
        "user_id": bob,
        "stream_id": 3,
        "devices": [{"device_id": "D1", "keys": d1.device_keys()}],
    }
    keys = await query(alice, {bob: []})
    assert keys["failures"] == {} and set(keys["device_keys"][bob]) == {"D1"}
    tracked = await services.remote_device_store.get_list(bob)
    assert tracked is not None and not tracked.stale and tracked.stream_id == 3


async def test_query_and_claim_remote_users(hs: Any, remotes: list[FakeRemote]) -> None:
    remote, slow = remotes
    dave = remote.user("dave")  # shares no room with us: asked with /user/keys/query each time
    alice = await User.new(hs)
    d1, d2 = Device(dave, "D1"), Device(dave, "D2")
    cross = CrossSigning(dave)
    bad = d2.device_keys()
    remote.query_answer = {
        "device_keys": {
            dave: {
                "D1": {**d1.device_keys(), "unsigned": {"device_display_name": "laptop"}},
                "D2": bad,
                "D3": bad,
            },
            remote.user("eve"): {"E1": Device(remote.user("eve"), "E1").device_keys()},  # not asked for
        },
        "master_keys": {dave: cross.master_key()},
        "self_signing_keys": {dave: {**cross.self_signing_key(), "usage": ["master"]}},  # malformed
    }
    keys = await query(alice, {dave: []})
    assert remote.calls == [("query", {"device_keys": {dave: []}})]
    assert set(keys["device_keys"]) == {dave}
    assert set(keys["device_keys"][dave]) == {"D1", "D2"}  # D3 carries D2's keys: dropped
    assert keys["device_keys"][dave]["D1"]["unsigned"] == {"device_display_name": "laptop"}
    assert keys["master_keys"] == {dave: cross.master_key()}
    assert keys["self_signing_keys"] == {}
    assert keys["failures"] == {}
    keys = await query(alice, {dave: ["D1"]})
    assert set(keys["device_keys"][dave]) == {"D1"}

    # Failures are per server; a slow server does not hold the answer past `timeout`.
    slow.delay = 30
    frank = slow.user("frank")
    keys = await query(alice, {dave: [], frank: [], "@x:127.0.0.1:1": []}, timeout=300)
    assert set(keys["failures"]) == {slow.name, "127.0.0.1:1"}
    assert all(f["status"] == 503 for f in keys["failures"].values())
    assert "D1" in keys["device_keys"][dave]

    remote.claim_answer = {
        "one_time_keys": {
            dave: {"D1": {"signed_curve25519:AAAA": d1.sign({"key": "k"}), "bad": "x"}, "D9": {"x:y": "z"}},
            remote.user("eve"): {"E1": {"signed_curve25519:B": "k"}},
        }
    }
    claimed = await alice.post(
        f"{V3}/keys/claim",
        {
            "one_time_keys": {dave: {"D1": "signed_curve25519"}, frank: {"F1": "signed_curve25519"}},
            "timeout": 300,
        },
    )
    assert claimed["one_time_keys"] == {dave: {"D1": {"signed_curve25519:AAAA": d1.sign({"key": "k"})}}}
    assert set(claimed["failures"]) == {slow.name}
    assert ("claim", {"one_time_keys": {dave: {"D1": "signed_curve25519"}}}) in remote.calls

    # A bad timeout is the client's error.
    await alice.post(f"{V3}/keys/query", {"device_keys": {dave: []}, "timeout": "soon"}, expect=400)


# -- our keys, as another server asks for them ------------------------------------------------------


async def signed(client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    header = sign_request(
        ORIGIN_KEY, origin=ORIGIN, destination=SERVER, method=method, uri=path, content=body
    )
    resp = await client.request(method, URL(path, encoded=True), json=body, headers={"Authorization": header})
    return resp.status, await resp.json()


async def test_serving_devices_and_keys(hs: Any) -> None:
    alice = await User.new(hs)
    device = Device(alice.user_id, alice.device_id)
    await alice.post(
        f"{V3}/keys/upload",
        {
            "device_keys": device.device_keys(),
            "one_time_keys": device.otks(1),
            "fallback_keys": device.otks(1, fallback=True),
        },
    )
    cross = CrossSigning(alice.user_id)
    await alice.post(
        f"{V3}/keys/device_signing/upload",
        {"master_key": cross.master_key(), "self_signing_key": cross.self_signing_key()},
    )
    await alice.put(f"{V3}/devices/{q(alice.device_id)}", {"display_name": "secret name"})

    path = f"{FED}/user/devices/{urllib.parse.quote(alice.user_id)}"
    status, body = await signed(hs, "GET", path)
    assert status == 200, body
    assert_matches_spec("user_devices.yaml", "/user/devices/{userId}", "GET", 200, body, api="server-server")
    assert body["user_id"] == alice.user_id and isinstance(body["stream_id"], int) and body["stream_id"] > 0
    assert body["devices"] == [{"device_id": alice.device_id, "keys": device.device_keys()}]
    assert body["master_key"] == cross.master_key()
    assert body["self_signing_key"] == cross.self_signing_key()
    assert "user_signing_key" not in body
    first_stream_id = body["stream_id"]

    # An EDU claiming to come from this server never replaces our users' keys.
    forged = CrossSigning(alice.user_id)
    await alice.create_room()  # so she "shares a room" with a local user: herself
    await dispatch(
        hs, SERVER, "m.signing_key_update", {"user_id": alice.user_id, "master_key": forged.master_key()}
    )
    await dispatch(hs, SERVER, "m.device_list_update", update(alice.user_id, "EVIL", 1, []))
    status, body = await signed(hs, "GET", path)
    assert body["master_key"] == cross.master_key() and body["stream_id"] == first_stream_id

    # A new device moves the stream id on; one without keys is listed without them.
    other = await User.new(hs)
    login = await other.post(
        f"{V3}/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": alice.user_id},
            "password": "pass-word-1",
        },
    )
    status, body = await signed(hs, "GET", path)
    assert {"device_id": login["device_id"]} in body["devices"]  # no keys yet
    second = Device(alice.user_id, login["device_id"])
    await User(hs, login).post(f"{V3}/keys/upload", {"device_keys": second.device_keys()})
    status, body = await signed(hs, "GET", path)
    assert body["stream_id"] > first_stream_id
    assert {"device_id": second.device_id, "keys": second.device_keys()} in body["devices"]

    for bad_path, errcode in (
        (f"{FED}/user/devices/{urllib.parse.quote('@x:elsewhere.example')}", "M_INVALID_PARAM"),
        (f"{FED}/user/devices/nonsense", "M_INVALID_PARAM"),
    ):
        status, body = await signed(hs, "GET", bad_path)
        assert (status, body["errcode"]) == (400, errcode)
    resp = await hs.get(path)  # unsigned
    assert resp.status == 401

    status, body = await signed(hs, "POST", f"{FED}/user/keys/query", {"device_keys": {alice.user_id: []}})
    assert status == 200, body
    assert_matches_spec("user_keys.yaml", "/user/keys/query", "POST", 200, body, api="server-server")
    assert body["device_keys"][alice.user_id][alice.device_id] == {**device.device_keys(), "unsigned": {}}
    assert body["master_keys"] == {alice.user_id: cross.master_key()}
    assert body["self_signing_keys"] == {alice.user_id: cross.self_signing_key()}
    assert "user_signing_keys" not in body
    for bad_body, errcode in (
        ({"device_keys": {"@x:elsewhere.example": []}}, "M_INVALID_PARAM"),
        ({"device_keys": []}, "M_BAD_JSON"),
        ({"device_keys": {alice.user_id: "all"}}, "M_BAD_JSON"),
        ({}, "M_MISSING_PARAM"),
    ):
        status, body = await signed(hs, "POST", f"{FED}/user/keys/query", bad_body)
        assert (status, body["errcode"]) == (400, errcode), bad_body

    claim = {
        "one_time_keys": {
            alice.user_id: {alice.device_id: "signed_curve25519"},
            "@x:elsewhere.example": {"D": "signed_curve25519"},
        }
    }
    taken = []
    for _ in range(3):
        status, body = await signed(hs, "POST", f"{FED}/user/keys/claim", claim)
        assert status == 200, body
        assert_matches_spec("user_keys.yaml", "/user/keys/claim", "POST", 200, body, api="server-server")
        assert set(body["one_time_keys"]) == {alice.user_id}
        taken.append(next(iter(body["one_time_keys"][alice.user_id][alice.device_id])))
    # the one-time key once, then the fallback key (again and again)
    assert taken[0] != taken[1] and taken[1] == taken[2]
    for bad_body, errcode in (
        ({"one_time_keys": {alice.user_id: {alice.device_id: 5}}}, "M_BAD_JSON"),
        ({"one_time_keys": "x"}, "M_BAD_JSON"),
        ({}, "M_MISSING_PARAM"),
    ):
        status, body = await signed(hs, "POST", f"{FED}/user/keys/claim", bad_body)
        assert (status, body["errcode"]) == (400, errcode), bad_body


async def _settled(client: Any) -> None:
    """The untracking checks spawned by the events consumer have run."""
    await asyncio.gather(*list(services_of(client).remote_devices._tasks))


async def test_untracked_once_no_room_is_shared(hs: Any, remotes: list[FakeRemote]) -> None:
    """Their server stops sending updates when we share no room: the cache is dropped, so a later
    query or update starts from a fresh resync instead of a silently outdated list."""
    remote = remotes[0]
    bob, carol = remote.user("bob"), remote.user("carol")
    alice = await User.new(hs)
    room_id = await alice.create_room()
    other_room = await alice.create_room()
    for user_id in (bob, carol):
        await remote_join(hs, room_id, user_id)
        remote.devices[user_id] = {"user_id": user_id, "stream_id": 1, "devices": []}
        await dispatch(hs, remote.name, "m.device_list_update", update(user_id, "D1", 1, []))
    await remote_join(hs, other_room, carol)
    store = services_of(hs).remote_device_store
    assert await store.get_list(bob) is not None and await store.get_list(carol) is not None

    # bob leaves: nobody here shares a room with him any more
    await services_of(hs).persister.send_one(
        EventDraft(room_id, "m.room.member", bob, {"membership": "leave"}, state_key=bob)
    )
    await _settled(hs)
    assert await store.get_list(bob) is None and await store.get_list(carol) is not None
    # alice leaves the first room: carol still shares the other one with her
    await alice.leave(room_id)
    await _settled(hs)
    assert await store.get_list(carol) is not None
    await alice.leave(other_room)
    await _settled(hs)
    assert await store.get_list(carol) is None
    assert await store.list_devices([bob, carol]) == {}


async def test_local_signature_on_a_remote_master_key(hs: Any, remotes: list[FakeRemote]) -> None:
    """Verifying a remote user: the local user's user-signing signature on their master key is
    stored here and merged into that user's master key in /keys/query."""
    remote = remotes[0]
    bob = remote.user("bob")
    alice = await User.new(hs)
    room_id = await alice.create_room()
    await remote_join(hs, room_id, bob)
    bob_cross = CrossSigning(bob)
    remote.devices[bob] = {
        "user_id": bob,
        "stream_id": 1,
        "devices": [],
        "master_key": bob_cross.master_key(),
    }
    await dispatch(hs, remote.name, "m.device_list_update", update(bob, "D1", 1, []))

    mine = CrossSigning(alice.user_id)
    await alice.post(
        f"{V3}/keys/device_signing/upload",
        {
            "master_key": mine.master_key(),
            "self_signing_key": mine.self_signing_key(),
            "user_signing_key": mine.user_signing_key(),
        },
    )
    master = bob_cross.master_key()
    master_id = next(iter(master["keys"]))
    result = await alice.post(
        f"{V3}/keys/signatures/upload", {bob: {master_id.split(":", 1)[1]: mine.sign_with_usk(master)}}
    )
    assert result == {"failures": {}}
    keys = await query(alice, {bob: []})
    signatures = keys["master_keys"][bob]["signatures"]
    assert set(signatures[alice.user_id]) == {f"ed25519:{CrossSigning._public(mine.usk)}"}
    # others do not see alice's signature
    carol = await User.new(hs)
    assert "signatures" not in (await query(carol, {bob: []}))["master_keys"][bob]
