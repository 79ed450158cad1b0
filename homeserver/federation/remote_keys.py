"""POST /keys/query and /keys/claim of a local client for users on other servers.

Users are grouped per server and each server is asked once, all servers at the same time, within
the client's `timeout`. A key query is answered from the cached device list when we track the user
(`RemoteDeviceLists`); a user we share a room with but do not track yet is resynced first (so the
cache is filled and later changes arrive as EDUs, as Synapse does); everyone else is asked for with
POST /_matrix/federation/v1/user/keys/query. A server that fails is listed in `failures` under its
name, in Synapse's shape (`status`, `message`). What a server answers is checked: only the users
and devices asked for, keys that name their own user and device, well-formed cross-signing keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from homeserver.core import ids
from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import FederationDenied, FederationError, RemoteHttpError
from homeserver.federation.remote_devices import (
    RemoteDeviceLists,
    parse_cross_signing_key,
    parse_device_keys,
)
from homeserver.storage.stores.e2e import E2eStore
from homeserver.storage.stores.remote_devices import RemoteDeviceStore

logger = logging.getLogger(__name__)

MIN_TIME_LIMIT_S = 0.5


class JsonPoster(Protocol):
    async def post_json(
        self, destination: str, path: str, body: Mapping[str, Any], *, time_limit: float | None = None
    ) -> Any: ...


@dataclass
class RemoteKeys:
    """The parts of a /keys/query answer that came from other servers."""

    device_keys: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    master_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    self_signing_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "device_keys": self.device_keys,
            "master_keys": self.master_keys,
            "self_signing_keys": self.self_signing_keys,
            "failures": self.failures,
        }


def failure_of(exc: BaseException) -> dict[str, Any]:
    """A server's entry in `failures`, as Synapse reports it."""
    if isinstance(exc, RemoteHttpError):
        return {"status": exc.status, "message": exc.reason}
    if isinstance(exc, NotRetryingDestination):
        return {"status": 503, "message": "Not ready for retry"}
    if isinstance(exc, FederationDenied):
        return {"status": 403, "message": "Federation denied"}
    if isinstance(exc, TimeoutError):
        return {"status": 503, "message": "Timed out"}
    if isinstance(exc, FederationError):
        return {"status": 503, "message": exc.reason}
    return {"status": 503, "message": str(exc) or type(exc).__name__}


def group_by_server(user_ids: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for user_id, value in user_ids.items():
        grouped.setdefault(ids.server_of(user_id), {})[user_id] = value
    return grouped


class RemoteKeyQueries:
    def __init__(
        self,
        lists: RemoteDeviceLists,
        store: RemoteDeviceStore,
        e2e_store: E2eStore,
        client: JsonPoster,
    ) -> None:
        self.lists = lists
        self.store = store
        self.e2e_store = e2e_store
        self.client = client

    # -- /keys/query ---------------------------------------------------------------------------------

    async def query(self, wanted: Mapping[str, list[str]], timeout_s: float) -> RemoteKeys:
        """`wanted`: remote user -> device ids (empty: all)."""
        result = RemoteKeys()
        deadline = asyncio.get_running_loop().time() + timeout_s
        servers = group_by_server(wanted)
        await asyncio.gather(
            *(self._query_server(s, users, deadline, result) for s, users in servers.items())
        )
        return result

    async def query_body(self, wanted: Mapping[str, list[str]], timeout_s: float) -> dict[str, Any]:
        """`query` in the shape of a /keys/query answer (what E2eKeysService.remote_query takes)."""
        return (await self.query(wanted, timeout_s)).body()

    async def _query_server(
        self, server: str, users: dict[str, list[str]], deadline: float, result: RemoteKeys
    ) -> None:
        try:
            cached = await self.lists.ensure_synced(list(users), deadline)
            await self._from_cache({u: users[u] for u in users if u in cached}, result)
            rest = {u: d for u, d in users.items() if u not in cached}
            if not rest:
                return
            body = await self.client.post_json(
                server,
                "/_matrix/federation/v1/user/keys/query",
                {"device_keys": rest},
                time_limit=_remaining(deadline),
            )
            if not isinstance(body, dict):
                raise ValueError("the answer is not an object")
            self._take_answer(rest, body, result)
        except (FederationError, NotRetryingDestination, TimeoutError, ValueError) as exc:
            logger.info("querying keys on %s failed: %s", server, exc)
            result.failures[server] = failure_of(exc)

    async def _from_cache(self, users: dict[str, list[str]], result: RemoteKeys) -> None:
        if not users:
            return
        devices = await self.store.list_devices(list(users))
        for user_id, device_ids in users.items():
            chosen = result.device_keys.setdefault(user_id, {})
            for device in devices.get(user_id, []):
                if device.keys is None or (device_ids and device.device_id not in device_ids):
                    continue
                keys = dict(device.keys)
                keys["unsigned"] = (
                    {"device_display_name": device.display_name} if device.display_name is not None else {}
                )
                chosen[device.device_id] = keys
        cross = await self.e2e_store.get_cross_signing_keys(list(users), ("master", "self_signing"))
        for (user_id, key_type), key in cross.items():
            target = result.master_keys if key_type == "master" else result.self_signing_keys
            target[user_id] = key.key

    @staticmethod
    def _take_answer(users: dict[str, list[str]], body: dict[str, Any], result: RemoteKeys) -> None:
        answered = body.get("device_keys")
        answered = answered if isinstance(answered, dict) else {}
        for user_id, device_ids in users.items():
            devices = answered.get(user_id)
            chosen = result.device_keys.setdefault(user_id, {})
            if not isinstance(devices, dict):
                continue
            for device_id, keys in devices.items():
                if device_ids and device_id not in device_ids:
                    continue
                try:
                    parsed = parse_device_keys(user_id, device_id, keys)
                except ValueError:
                    logger.info("ignoring malformed keys of %s's device %s", user_id, device_id)
                    continue
                if parsed is None:
                    continue
                unsigned = keys.get("unsigned")
                name = unsigned.get("device_display_name") if isinstance(unsigned, dict) else None
                parsed["unsigned"] = {"device_display_name": name} if isinstance(name, str) else {}
                chosen[device_id] = parsed
        for field_name, key_type, target in (
            ("master_keys", "master", result.master_keys),
            ("self_signing_keys", "self_signing", result.self_signing_keys),
        ):
            keys_by_user = body.get(field_name)
            if not isinstance(keys_by_user, dict):
                continue
            for user_id in users:
                key = parse_cross_signing_key(user_id, key_type, keys_by_user.get(user_id))
                if key is not None:
                    target[user_id] = key.key

    # -- /keys/claim ---------------------------------------------------------------------------------

    async def claim(
        self, wanted: Mapping[str, dict[str, str]], timeout_s: float
    ) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
        """`wanted`: remote user -> device -> algorithm. (claimed keys, failures by server)."""
        claimed: dict[str, dict[str, dict[str, Any]]] = {}
        failures: dict[str, dict[str, Any]] = {}
        deadline = asyncio.get_running_loop().time() + timeout_s

        async def one(server: str, users: dict[str, dict[str, str]]) -> None:
            try:
                body = await self.client.post_json(
                    server,
                    "/_matrix/federation/v1/user/keys/claim",
                    {"one_time_keys": users},
                    time_limit=_remaining(deadline),
                )
                if not isinstance(body, dict):
                    raise ValueError("the answer is not an object")
            except (FederationError, NotRetryingDestination, TimeoutError, ValueError) as exc:
                logger.info("claiming keys on %s failed: %s", server, exc)
                failures[server] = failure_of(exc)
                return
            answered = body.get("one_time_keys")
            answered = answered if isinstance(answered, dict) else {}
            for user_id, devices in users.items():
                by_device = answered.get(user_id)
                if not isinstance(by_device, dict):
                    continue
                for device_id in devices:
                    keys = by_device.get(device_id)
                    if not isinstance(keys, dict):
                        continue
                    good = {k: v for k, v in keys.items() if ":" in k and isinstance(v, str | dict)}
                    if good:
                        claimed.setdefault(user_id, {})[device_id] = good

        await asyncio.gather(*(one(s, users) for s, users in group_by_server(wanted).items()))
        return claimed, failures


def _remaining(deadline: float) -> float:
    return max(MIN_TIME_LIMIT_S, deadline - asyncio.get_running_loop().time())
