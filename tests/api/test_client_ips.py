"""Client addresses behind a proxy (x_forwarded), last-seen per device, login limits per address."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.config.sections import ListenerConfig

from ..conftest import services_of
from .helpers import auth, register

DEVICES = "/_matrix/client/v3/devices"
LOGIN = "/_matrix/client/v3/login"


def _listener(x_forwarded: bool, trusted_proxies: tuple[str, ...] = ()) -> ListenerConfig:
    return ListenerConfig(8008, ("127.0.0.1",), "http", False, x_forwarded, ("client",), trusted_proxies)


async def _client(aiohttp_client: Any, config: HomeserverConfig, listener: ListenerConfig) -> Any:
    return await aiohttp_client(create_app_from_config(config, listener=listener))


async def _devices(client: Any, token: str, **headers: str) -> dict[str, dict[str, Any]]:
    resp = await client.get(DEVICES, headers={**auth(token), **headers})
    body = await resp.json()
    assert resp.status == 200, body
    return {d["device_id"]: d for d in body["devices"]}


async def test_last_seen_comes_from_the_proxy(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]
) -> None:
    client = await _client(aiohttp_client, engine_config(), _listener(x_forwarded=True))
    user = await register(client)
    token, device_id = user["access_token"], user["device_id"]
    # The client's own X-Forwarded-For entry (6.6.6.6) is not trusted; the proxy's appended one is.
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9", "User-Agent": "Element/1.11 (test)"}
    device = (await _devices(client, token, **headers))[device_id]
    assert device["last_seen_ip"] == "203.0.113.9"
    assert isinstance(device["last_seen_ts"], int)

    resp = await client.get(f"{DEVICES}/{device_id}", headers={**auth(token), "X-Real-IP": "198.51.100.3"})
    assert (await resp.json())["last_seen_ip"] == "198.51.100.3"

    # Flushed in one batch: the device row and one user_ips row per (address, user agent).
    services = services_of(client)
    await services.client_ips.flush()
    stored = await services.device_store.get_device(user["user_id"], device_id)
    assert stored is not None and stored.last_seen_ip == "198.51.100.3"
    seen = await services.client_ips.store.list_seen(user["user_id"])
    rows = {(s.device_id, s.ip, s.user_agent) for s in seen}
    assert (device_id, "203.0.113.9", "Element/1.11 (test)") in rows
    assert (device_id, "198.51.100.3") in {(s.device_id, s.ip) for s in seen}
    # A request without proxy headers is attributed to the peer (the proxy itself).
    assert (await _devices(client, token))[device_id]["last_seen_ip"] == "127.0.0.1"


async def test_forwarded_headers_ignored_without_x_forwarded(
    aiohttp_client: Any, config: HomeserverConfig
) -> None:
    client = await _client(aiohttp_client, config, _listener(x_forwarded=False))
    user = await register(client)
    spoofed = {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.7"}
    device = (await _devices(client, user["access_token"], **spoofed))[user["device_id"]]
    assert device["last_seen_ip"] == "127.0.0.1"


async def test_trusted_proxies_are_skipped(aiohttp_client: Any, config: HomeserverConfig) -> None:
    listener = _listener(x_forwarded=True, trusted_proxies=("10.0.0.0/8",))
    client = await _client(aiohttp_client, config, listener)
    user = await register(client)
    chain = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.2.3"}
    device = (await _devices(client, user["access_token"], **chain))[user["device_id"]]
    assert device["last_seen_ip"] == "203.0.113.9"


async def test_login_limit_is_per_forwarded_address(aiohttp_client: Any, tmp_path: Any) -> None:
    from ..conftest import OPEN_LIMITS, make_config

    tight = {"per_second": 0.001, "burst_count": 2}
    config = make_config(
        tmp_path, rc_login={"address": tight, "account": OPEN_LIMITS, "failed_attempts": OPEN_LIMITS}
    )
    client = await _client(aiohttp_client, config, _listener(x_forwarded=True))
    await register(client, "pupil", password="pw-pupil-1")
    body = {"type": "m.login.password", "user": "pupil", "password": "pw-pupil-1"}

    def from_(address: str) -> dict[str, str]:
        return {"X-Forwarded-For": address}

    statuses = [(await client.post(LOGIN, json=body, headers=from_("203.0.113.1"))).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    # Another client behind the same proxy is not affected.
    assert (await client.post(LOGIN, json=body, headers=from_("203.0.113.2"))).status == 200


async def test_default_login_limits_let_a_school_behind_one_address_in(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    """A class logging in at once from one NAT address; the per-account limits still hold."""
    from ..conftest import make_config

    config = make_config(tmp_path, rc_login={})  # the defaults
    client = await aiohttp_client(create_app_from_config(config))
    for i in range(30):
        await register(client, f"student{i}", password=f"pw-student-{i}")
    for i in range(30):
        body = {"type": "m.login.password", "user": f"student{i}", "password": f"pw-student-{i}"}
        resp = await client.post(LOGIN, json=body)
        assert resp.status == 200, await resp.json()

    # One account: rc_login.account allows a burst of 5 logins.
    body = {"type": "m.login.password", "user": "student0", "password": "pw-student-0"}
    statuses = [(await client.post(LOGIN, json=body)).status for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]  # the first login above counted too
    # Password guessing on another account: rc_login.failed_attempts (burst 3).
    wrong = {"type": "m.login.password", "user": "student1", "password": "guess"}
    statuses = [(await client.post(LOGIN, json=wrong)).status for _ in range(4)]
    assert statuses == [403, 403, 403, 429]
