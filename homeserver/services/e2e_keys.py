"""End-to-end encryption keys (spec "End-to-End Encryption"): device identity keys, one-time and
fallback keys, cross-signing keys and signatures.

Rules follow the spec and, where it is silent, Synapse:
- device keys must carry a valid self-signature by the device's own ed25519 key (Synapse does not
  check this; we do, and answer `M_INVALID_SIGNATURE`);
- one-time keys are claimed in upload order and each is handed out at most once, also under
  concurrent claims (see `E2eStore.claim_key`); a device's fallback key is returned when its
  one-time keys ran out;
- cross-signing keys may be uploaded without UIA the first time or when identical to the stored
  ones; replacing them needs UIA (decided here, run by the route);
- every change that other users must re-query records a row in the device-list stream in the same
  transaction (`DeviceListService.changing`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from unpaddedbase64 import decode_base64

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.crypto.signing import SignatureError, verify_ed25519_signature
from homeserver.http.requester import Requester
from homeserver.services.device_lists import DeviceListService
from homeserver.storage.database import Database
from homeserver.storage.stores.devices import DeviceStore
from homeserver.storage.stores.e2e import CrossSigningKey, E2eStore, OneTimeKey, Signature

logger = logging.getLogger(__name__)

MAX_ONE_TIME_KEYS_PER_ALGORITHM = 500  # as Synapse: well above what clients keep on the server
CROSS_SIGNING_FIELDS = {
    "master_key": "master",
    "self_signing_key": "self_signing",
    "user_signing_key": "user_signing",
}
MAX_CACHED_COUNTS = 100_000
REMOTE_FAILURE = {"status": 503, "message": "Federation is not available on this server"}
DEFAULT_REMOTE_TIMEOUT_MS = 10_000  # the spec's default `timeout` of /keys/query and /keys/claim
MAX_REMOTE_TIMEOUT_MS = 60_000

# Keys of users on other servers (federation/remote_keys.py): (user -> device ids, timeout in
# seconds) -> {"device_keys", "master_keys", "self_signing_keys", "failures"}; and
# (user -> device -> algorithm, timeout) -> (claimed keys, failures by server).
RemoteKeyQuery = Callable[[dict[str, list[str]], float], Awaitable[Mapping[str, Any]]]
RemoteKeyClaim = Callable[
    [dict[str, dict[str, str]], float],
    Awaitable[tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]],
]


def _bad_json(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def _strip(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _failure(err: MatrixError) -> dict[str, Any]:
    return {"status": err.status, "errcode": err.errcode, "error": err.error}


def _signatures_by(signed: Mapping[str, Any], user_id: str) -> dict[str, Any]:
    """``signed["signatures"][user_id]`` when both levels are objects, else {} (refused by callers)."""
    signatures = signed.get("signatures")
    by_user = signatures.get(user_id) if isinstance(signatures, dict) else None
    return by_user if isinstance(by_user, dict) else {}


def _invalid_signature(msg: str = "Invalid signature") -> MatrixError:
    return MatrixError(400, "M_INVALID_SIGNATURE", msg)


def _parse_key_map(value: Any, field: str) -> list[OneTimeKey]:
    """`{"<algorithm>:<key id>": key}` as uploaded in one_time_keys / fallback_keys."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise _bad_json(f"'{field}' must be an object")
    keys = []
    for full_id, key in value.items():
        algorithm, sep, key_id = full_id.partition(":")
        if not sep or not algorithm or not key_id:
            raise _bad_json(f"Invalid key id {full_id!r} in '{field}': expected <algorithm>:<key id>")
        if not isinstance(key, str | dict):
            raise _bad_json(f"Key {full_id!r} in '{field}' must be a string or an object")
        keys.append(OneTimeKey(algorithm, key_id, key))
    return keys


def _same_key(old: Any, new: Any) -> bool:
    """Equal apart from signatures (a retried upload may be signed afresh)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return _strip(old) == _strip(new)
    return bool(old == new)


def cross_signing_public_key(key: Mapping[str, Any]) -> str:
    """The unpadded base64 ed25519 public key of a cross-signing key object."""
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise MatrixError(400, "M_INVALID_PARAM", "A cross-signing key must have exactly one public key")
    ((key_id, public),) = keys.items()
    algorithm, _, name = key_id.partition(":")
    if algorithm != "ed25519" or not isinstance(public, str) or name != public:
        raise MatrixError(400, "M_INVALID_PARAM", "Cross-signing keys must be ed25519:<public key>")
    try:
        if len(decode_base64(public)) != 32:
            raise ValueError("wrong length")
    except Exception as exc:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid ed25519 public key") from exc
    return public


def _parse_query(device_keys: Any) -> dict[str, list[str]]:
    """`device_keys` of a key query: user -> device ids (empty: all)."""
    if not isinstance(device_keys, dict):
        raise _bad_json("'device_keys' must be an object")
    wanted: dict[str, list[str]] = {}
    for user_id, devices in device_keys.items():
        if devices is None:
            devices = []
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise _bad_json(f"'device_keys.{user_id}' must be an array of device ids")
        if not ids.is_valid_user_id(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user id {user_id!r}")
        wanted[user_id] = devices
    return wanted


def _parse_claim(one_time_keys: Any) -> dict[str, dict[str, str]]:
    """`one_time_keys` of a claim: user -> device -> algorithm."""
    if not isinstance(one_time_keys, dict):
        raise _bad_json("'one_time_keys' must be an object")
    wanted: dict[str, dict[str, str]] = {}
    for user_id, devices in one_time_keys.items():
        if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
            raise _bad_json(f"'one_time_keys.{user_id}' must map device ids to algorithms")
        if not ids.is_valid_user_id(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user id {user_id!r}")
        wanted[user_id] = devices
    return wanted


def _timeout_s(timeout_ms: Any) -> float:
    """The `timeout` of /keys/query and /keys/claim (ms; default 10 s), capped."""
    if timeout_ms is None:
        timeout_ms = DEFAULT_REMOTE_TIMEOUT_MS
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "'timeout' must be a non-negative integer")
    return min(timeout_ms, MAX_REMOTE_TIMEOUT_MS) / 1000


class E2eKeysService:
    def __init__(
        self,
        db: Database,
        store: E2eStore,
        devices: DeviceStore,
        device_lists: DeviceListService,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self.db = db
        self.store = store
        self.devices = devices
        self.device_lists = device_lists
        self.clock = clock
        self.server_name = server_name
        # (user, device) -> (one-time key counts, unused fallback algorithms)
        self._counts: dict[tuple[str, str], tuple[dict[str, int], list[str]]] = {}
        self._counts_generation = 0
        # set when federation is wired (container): how users on other servers are asked
        self.remote_query: RemoteKeyQuery | None = None
        self.remote_claim: RemoteKeyClaim | None = None

    def _is_local(self, user_id: str) -> bool:
        return ids.server_of(user_id) == self.server_name

    # -- POST /keys/upload ---------------------------------------------------------------------

    def _check_device_keys(self, requester: Requester, device_keys: Any) -> dict[str, Any]:
        if not isinstance(device_keys, dict):
            raise _bad_json("'device_keys' must be an object")
        user_id, device_id = requester.user_id, requester.device_id
        if device_keys.get("user_id") != user_id:
            raise _bad_json(
                "Provided `user_id` in `device_keys` does not match that of the authenticated user"
            )
        if device_keys.get("device_id") != device_id:
            raise _bad_json(
                "Provided `device_id` in `device_keys` does not match that of the authenticated user device"
            )
        keys = device_keys.get("keys")
        if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
            raise _bad_json("'device_keys.keys' must be an object of strings")
        algorithms = device_keys.get("algorithms")
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise _bad_json("'device_keys.algorithms' must be an array of strings")
        if not isinstance(device_keys.get("signatures"), dict):
            raise _bad_json("'device_keys.signatures' must be an object")
        key_id = f"ed25519:{device_id}"
        public = keys.get(key_id)
        if public is None:
            raise _bad_json(f"'device_keys.keys' must contain the device's {key_id} key")
        try:
            verify_ed25519_signature(device_keys, user_id, key_id, public)
        except SignatureError as exc:
            raise _invalid_signature(f"Invalid self-signature on device keys: {exc}") from exc
        return {k: v for k, v in device_keys.items() if k != "unsigned"}

    async def upload_keys(self, requester: Requester, body: dict[str, Any]) -> dict[str, Any]:
        user_id, device_id = requester.user_id, requester.device_id
        if device_id is None:
            raise MatrixError(
                400, "M_INVALID_PARAM", "To upload keys, the access token must belong to a device"
            )
        raw_device_keys = body.get("device_keys")
        device_keys = self._check_device_keys(requester, raw_device_keys) if raw_device_keys else None
        one_time_keys = _parse_key_map(body.get("one_time_keys"), "one_time_keys")
        fallback_field = "fallback_keys" if "fallback_keys" in body else "org.matrix.msc2732.fallback_keys"
        fallback_keys = {k.algorithm: k for k in _parse_key_map(body.get(fallback_field), fallback_field)}
        now = self.clock.time_ms()

        async with self.device_lists.changing([(user_id, None)]) as pending:
            conn = pending.conn
            pending.record = False
            if device_keys is not None:
                existing = await self.store.get_device_keys_txn(conn, user_id, device_id)
                if existing != device_keys:
                    await self.store.upsert_device_keys_txn(conn, user_id, device_id, device_keys, now)
                    pending.record = True
            if one_time_keys:
                stored = await self.store.get_one_time_keys_txn(
                    conn, user_id, device_id, [(k.algorithm, k.key_id) for k in one_time_keys]
                )
                new: list[OneTimeKey] = []
                for key in one_time_keys:
                    old = stored.get((key.algorithm, key.key_id))
                    if old is None:
                        new.append(key)
                    elif not _same_key(old, key.key):
                        raise MatrixError(
                            400,
                            "M_INVALID_PARAM",
                            f"One time key {key.algorithm}:{key.key_id} already exists"
                            " with different content",
                        )
                if new:
                    counts = await self.store.count_one_time_keys_txn(conn, user_id, device_id)
                    for key in new:
                        counts[key.algorithm] = counts.get(key.algorithm, 0) + 1
                        if counts[key.algorithm] > MAX_ONE_TIME_KEYS_PER_ALGORITHM:
                            raise MatrixError(
                                400,
                                "M_INVALID_PARAM",
                                f"Too many {key.algorithm} one-time keys: a device may hold at most "
                                f"{MAX_ONE_TIME_KEYS_PER_ALGORITHM}",
                            )
                    await self.store.insert_one_time_keys_txn(conn, user_id, device_id, new, now)
            if fallback_keys:
                stored_fallback = await self.store.get_fallback_keys_txn(conn, user_id, device_id)
                for algorithm, key in fallback_keys.items():
                    old_fb = stored_fallback.get(algorithm)
                    if old_fb is not None and old_fb[0] == key.key_id and _same_key(old_fb[1], key.key):
                        continue  # the same key again: keep its `used` flag
                    await self.store.set_fallback_key_txn(conn, user_id, device_id, key, used=False)
            counts = await self.store.count_one_time_keys_txn(conn, user_id, device_id)
        self._invalidate_counts(user_id, device_id)
        return {"one_time_key_counts": {"signed_curve25519": 0, **counts}}

    async def key_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """One-time key counts and unused fallback algorithms of a device, for every /sync
        response; cached per device and dropped by whatever changes them (upload, claim, delete)."""
        cached = self._counts.get((user_id, device_id))
        if cached is not None:
            return dict(cached[0]), list(cached[1])
        generation = self._counts_generation
        counts, fallback = await self.store.key_counts(user_id, device_id)
        counts = {"signed_curve25519": 0, **counts}
        if generation == self._counts_generation:  # nothing was invalidated while we read
            if len(self._counts) >= MAX_CACHED_COUNTS:
                self._counts.pop(next(iter(self._counts)))
            self._counts[(user_id, device_id)] = (counts, fallback)
        return dict(counts), list(fallback)

    def _invalidate_counts(self, user_id: str, device_id: str) -> None:
        self._counts_generation += 1
        self._counts.pop((user_id, device_id), None)

    # -- POST /keys/query ----------------------------------------------------------------------

    async def query_keys(self, requester_id: str, device_keys: Any, timeout_ms: Any = None) -> dict[str, Any]:
        wanted = _parse_query(device_keys)
        local = {u: d for u, d in wanted.items() if self._is_local(u)}
        remote = {u: d for u, d in wanted.items() if not self._is_local(u)}
        body = await self._local_keys(local, requester_id)
        if remote:
            await self._query_remote(remote, _timeout_s(timeout_ms), body)
        # a local user's signatures on other users' keys (their user-signing key on a master key)
        # are stored here, not on the other server
        if remote:
            await self._add_signatures_by(requester_id, list(remote), body)
        return body

    async def _query_remote(
        self, remote: dict[str, list[str]], timeout_s: float, body: dict[str, Any]
    ) -> None:
        if self.remote_query is None:
            for user_id in remote:
                body["failures"][ids.server_of(user_id)] = REMOTE_FAILURE
            return
        answer = await self.remote_query(remote, timeout_s)
        for part in ("device_keys", "master_keys", "self_signing_keys", "failures"):
            body[part].update(answer.get(part) or {})

    async def _add_signatures_by(self, signer: str, user_ids: list[str], body: dict[str, Any]) -> None:
        signatures = [s for s in await self.store.list_signatures(user_ids) if s.signer == signer]
        for sig in signatures:
            target: dict[str, Any] | None = (
                body["device_keys"].get(sig.target_user_id, {}).get(sig.target_device_id)
            )
            master = body["master_keys"].get(sig.target_user_id)
            if target is None and master is not None:
                if f"ed25519:{sig.target_device_id}" in (master.get("keys") or {}):
                    target = master
            if target is None:
                continue
            merged = {u: dict(v) for u, v in (target.get("signatures") or {}).items() if isinstance(v, dict)}
            merged.setdefault(signer, {})[sig.key_id] = sig.signature
            target["signatures"] = merged

    async def _local_keys(
        self, wanted: dict[str, list[str]], requester_id: str | None, *, with_names: bool = True
    ) -> dict[str, Any]:
        """The keys of local users; `requester_id` None (another server asking): signatures by the
        users themselves only, no user-signing keys, and no device names unless `with_names`."""
        users = list(wanted)
        stored = await self.store.list_device_keys(users)
        signatures = await self.store.list_signatures(users)
        cross = await self.store.get_cross_signing_keys(users)

        sigs_by_target: dict[tuple[str, str], list[Signature]] = {}
        for sig in signatures:
            sigs_by_target.setdefault((sig.target_user_id, sig.target_device_id), []).append(sig)

        def with_signatures(user_id: str, target: str, obj: dict[str, Any]) -> dict[str, Any]:
            extra = [
                s
                for s in sigs_by_target.get((user_id, target), ())
                if s.signer == user_id or s.signer == requester_id
            ]
            if not extra:
                return obj
            out = dict(obj)
            merged = {u: dict(v) for u, v in (obj.get("signatures") or {}).items() if isinstance(v, dict)}
            for s in extra:
                merged.setdefault(s.signer, {})[s.key_id] = s.signature
            out["signatures"] = merged
            return out

        result_devices: dict[str, dict[str, Any]] = {}
        for user_id, devices in wanted.items():
            user_devices = stored.get(user_id, {})
            chosen = devices or list(user_devices)
            result_devices[user_id] = {
                d: with_signatures(user_id, d, user_devices[d]) for d in chosen if d in user_devices
            }
            if not with_names:
                for keys in result_devices[user_id].values():
                    keys["unsigned"] = {}
        body: dict[str, Any] = {
            "device_keys": result_devices,
            "failures": {},
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
        }
        for (user_id, key_type), key in cross.items():
            if key_type == "user_signing" and (requester_id is None or user_id != requester_id):
                continue
            body[f"{key_type}_keys"][user_id] = with_signatures(user_id, key.public_key, key.key)
        return body

    # -- POST /keys/claim ----------------------------------------------------------------------

    async def claim_keys(self, one_time_keys: Any, timeout_ms: Any = None) -> dict[str, Any]:
        wanted = _parse_claim(one_time_keys)
        claimed = await self._claim_local({u: d for u, d in wanted.items() if self._is_local(u)})
        failures: dict[str, Any] = {}
        remote = {u: d for u, d in wanted.items() if not self._is_local(u)}
        if remote and self.remote_claim is None:
            failures = {ids.server_of(u): REMOTE_FAILURE for u in remote}
        elif remote and self.remote_claim is not None:
            remote_claimed, failures = await self.remote_claim(remote, _timeout_s(timeout_ms))
            claimed.update(remote_claimed)
        return {"one_time_keys": claimed, "failures": failures}

    async def _claim_local(self, wanted: dict[str, dict[str, str]]) -> dict[str, dict[str, dict[str, Any]]]:
        claimed: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id, devices in wanted.items():
            for device_id, algorithm in devices.items():
                key = await self.store.claim_key(user_id, device_id, algorithm)
                if key is not None:
                    self._invalidate_counts(user_id, device_id)
                    claimed.setdefault(user_id, {}).setdefault(device_id, {})[
                        f"{key.algorithm}:{key.key_id}"
                    ] = key.key
        return claimed

    # -- serving other servers (federation user_keys.yaml, user_devices.yaml) --------------------

    async def query_keys_for_server(self, device_keys: Any) -> dict[str, Any]:
        """POST /_matrix/federation/v1/user/keys/query: local users only (as Synapse: 400 else);
        device names are not shared with other servers (Synapse's default)."""
        wanted = _parse_query(device_keys)
        for user_id in wanted:
            if not self._is_local(user_id):
                raise MatrixError(400, "M_INVALID_PARAM", f"User {user_id} is not hosted on this server")
        body = await self._local_keys(wanted, None, with_names=False)
        return {k: body[k] for k in ("device_keys", "master_keys", "self_signing_keys")}

    async def claim_keys_for_server(self, one_time_keys: Any) -> dict[str, Any]:
        """POST /_matrix/federation/v1/user/keys/claim: keys of other servers' users are not ours to
        give and are left out."""
        wanted = _parse_claim(one_time_keys)
        return {
            "one_time_keys": await self._claim_local({u: d for u, d in wanted.items() if self._is_local(u)})
        }

    async def devices_for_server(self, user_id: str) -> dict[str, Any]:
        """GET /_matrix/federation/v1/user/devices/{userId} for a local user: every device, with
        its keys when uploaded (self-signatures merged), the master / self-signing keys, and the
        stream id of the user's latest device-list change (what m.device_list_update EDUs count)."""
        if not ids.is_valid_user_id(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
        if not self._is_local(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", "User is not hosted on this homeserver")
        stream_id = await self.store.latest_device_list_stream_id(user_id)
        keys = await self._local_keys({user_id: []}, None, with_names=False)
        device_keys = keys["device_keys"].get(user_id, {})
        devices = []
        for device in await self.devices.list_devices(user_id):
            entry: dict[str, Any] = {"device_id": device.device_id}
            if device.device_id in device_keys:
                entry["keys"] = {k: v for k, v in device_keys[device.device_id].items() if k != "unsigned"}
            devices.append(entry)
        body: dict[str, Any] = {"user_id": user_id, "stream_id": stream_id, "devices": devices}
        if user_id in keys["master_keys"]:
            body["master_key"] = keys["master_keys"][user_id]
        if user_id in keys["self_signing_keys"]:
            body["self_signing_key"] = keys["self_signing_keys"][user_id]
        return body

    # -- cross-signing keys --------------------------------------------------------------------

    def _parse_cross_signing(self, user_id: str, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        keys: dict[str, dict[str, Any]] = {}
        for field, key_type in CROSS_SIGNING_FIELDS.items():
            value = body.get(field)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise _bad_json(f"'{field}' must be an object")
            usage = value.get("usage")
            if value.get("user_id") != user_id or not isinstance(usage, list) or key_type not in usage:
                raise MatrixError(400, "M_INVALID_PARAM", f"Invalid {key_type} key")
            cross_signing_public_key(value)
            keys[key_type] = {k: v for k, v in value.items() if k != "unsigned"}
        return keys

    async def cross_signing_needs_uia(self, requester: Requester, body: dict[str, Any]) -> bool | None:
        """None: the keys equal the stored ones (nothing to do); True: replacing keys needs UIA;
        False: a first upload (or an application service), no UIA."""
        user_id = requester.user_id
        keys = self._parse_cross_signing(user_id, body)
        stored = await self.store.get_cross_signing_keys([user_id])
        if all(
            (stored_key := stored.get((user_id, t))) is not None and stored_key.key == key
            for t, key in keys.items()
        ):
            return None
        has_master = (user_id, "master") in stored
        return has_master and requester.app_service_id is None

    async def upload_cross_signing_keys(self, requester: Requester, body: dict[str, Any]) -> None:
        user_id = requester.user_id
        keys = self._parse_cross_signing(user_id, body)
        stored = await self.store.get_cross_signing_keys([user_id])
        master = keys.get("master")
        if master is None and (user_id, "master") in stored:
            master = stored[(user_id, "master")].key
        if master is None:
            raise MatrixError(400, "M_MISSING_PARAM", "No master key available")
        master_public = cross_signing_public_key(master)
        for key_type in ("self_signing", "user_signing"):
            key = keys.get(key_type)
            if key is None:
                continue
            try:
                verify_ed25519_signature(key, user_id, f"ed25519:{master_public}", master_public)
            except SignatureError as exc:
                raise _invalid_signature(f"Invalid signature on {key_type} key") from exc
        if not keys:
            return
        device_ids = {d.device_id for d in await self.devices.list_devices(user_id)}
        for key in keys.values():
            if cross_signing_public_key(key) in device_ids:
                raise MatrixError(403, "M_FORBIDDEN", "Key ID in use")
        changes: list[tuple[str, str | None]] = []
        if "master" in keys or "self_signing" in keys:
            changes.append((user_id, None))
        if "user_signing" in keys:
            changes.append((user_id, user_id))
        now = self.clock.time_ms()
        async with self.device_lists.changing(changes) as pending:
            for key_type, key in keys.items():
                await self.store.upsert_cross_signing_key_txn(
                    pending.conn, CrossSigningKey(user_id, key_type, cross_signing_public_key(key), key), now
                )

    # -- POST /keys/signatures/upload ----------------------------------------------------------

    async def upload_signatures(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        for target_user, items in body.items():
            if not isinstance(items, dict) or not all(isinstance(v, dict) for v in items.values()):
                raise MatrixError(
                    400, "M_INVALID_PARAM", f"'{target_user}' must map key ids to signed objects"
                )
        failures: dict[str, dict[str, Any]] = {}
        to_store: list[Signature] = []
        changes: list[tuple[str, str | None]] = []

        own = body.get(user_id) or {}
        if own:
            stored_own = await self._process_own_signatures(user_id, own, failures)
            if stored_own:
                to_store += stored_own
                changes.append((user_id, None))
        others = {u: v for u, v in body.items() if u != user_id and v}
        if others:
            stored_other = await self._process_other_signatures(user_id, others, failures)
            to_store += stored_other
            changes += sorted({(s.target_user_id, user_id) for s in stored_other})
        if to_store:
            async with self.device_lists.changing(changes) as pending:
                await self.store.upsert_signatures_txn(pending.conn, to_store)
        return {"failures": failures}

    async def _process_own_signatures(
        self, user_id: str, items: dict[str, dict[str, Any]], failures: dict[str, dict[str, Any]]
    ) -> list[Signature]:
        cross = await self.store.get_cross_signing_keys([user_id], ("master", "self_signing"))
        master = cross.get((user_id, "master"))
        ssk = cross.get((user_id, "self_signing"))
        devices = (await self.store.list_device_keys([user_id])).get(user_id, {})
        out: list[Signature] = []
        for key_id, signed in items.items():
            try:
                sigs = _signatures_by(signed, user_id)
                if not sigs or not all(isinstance(v, str) for v in sigs.values()):
                    raise _invalid_signature("No signature from the user on this key")
                if master is not None and key_id == master.public_key:
                    # The master key, signed by one of the user's devices.
                    if _strip(signed) != _strip(master.key):
                        raise MatrixError(400, "M_INVALID_PARAM", "Key does not match the stored master key")
                    known = (master.key.get("signatures") or {}).get(user_id) or {}
                    for sig_key_id, signature in sigs.items():
                        if known.get(sig_key_id) == signature:
                            continue
                        _, _, signing_device = sig_key_id.partition(":")
                        device = devices.get(signing_device)
                        public = (device or {}).get("keys", {}).get(sig_key_id)
                        if not sig_key_id.startswith("ed25519:") or not isinstance(public, str):
                            raise _invalid_signature(f"Unknown signing key {sig_key_id}")
                        try:
                            verify_ed25519_signature(signed, user_id, sig_key_id, public)
                        except SignatureError as exc:
                            raise _invalid_signature() from exc
                        out.append(Signature(user_id, sig_key_id, user_id, key_id, signature))
                    continue
                # A device, signed by the self-signing key.
                device = devices.get(key_id)
                if device is None:
                    raise MatrixError(404, "M_NOT_FOUND", "Unknown device")
                if ssk is None:
                    raise MatrixError(404, "M_NOT_FOUND", "No self-signing key found")
                ssk_key_id = f"ed25519:{ssk.public_key}"
                if ssk_key_id not in sigs:
                    raise _invalid_signature("No signature from the self-signing key")
                if _strip(signed) != _strip(device):
                    raise MatrixError(400, "M_INVALID_PARAM", "Key does not match the stored device keys")
                try:
                    verify_ed25519_signature(signed, user_id, ssk_key_id, ssk.public_key)
                except SignatureError as exc:
                    raise _invalid_signature() from exc
                out.append(Signature(user_id, ssk_key_id, user_id, key_id, sigs[ssk_key_id]))
            except MatrixError as err:
                failures.setdefault(user_id, {})[key_id] = _failure(err)
        return out

    async def _process_other_signatures(
        self, user_id: str, others: dict[str, dict[str, dict[str, Any]]], failures: dict[str, dict[str, Any]]
    ) -> list[Signature]:
        own = await self.store.get_cross_signing_keys([user_id], ("user_signing",))
        usk = own.get((user_id, "user_signing"))
        masters = await self.store.get_cross_signing_keys(list(others), ("master",))
        out: list[Signature] = []
        for target_user, items in others.items():
            if usk is None:
                err = MatrixError(404, "M_NOT_FOUND", "No user-signing key found")
                failures[target_user] = dict.fromkeys(items, _failure(err))
                continue
            master = masters.get((target_user, "master"))
            usk_key_id = f"ed25519:{usk.public_key}"
            for key_id, signed in items.items():
                try:
                    if master is None or key_id != master.public_key:
                        raise MatrixError(404, "M_NOT_FOUND", "Unknown master key")
                    signature = _signatures_by(signed, user_id).get(usk_key_id)
                    if not isinstance(signature, str):
                        raise _invalid_signature("No signature from the user-signing key")
                    if _strip(signed) != _strip(master.key):
                        raise MatrixError(400, "M_INVALID_PARAM", "Key does not match the stored master key")
                    try:
                        verify_ed25519_signature(signed, user_id, usk_key_id, usk.public_key)
                    except SignatureError as exc:
                        raise _invalid_signature() from exc
                    out.append(Signature(user_id, usk_key_id, target_user, key_id, signature))
                except MatrixError as err:
                    failures.setdefault(target_user, {})[key_id] = _failure(err)
        return out

    # -- device lifecycle ----------------------------------------------------------------------

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        if not device_ids:
            return
        async with self.device_lists.changing([(user_id, None)]) as pending:
            await self.store.delete_devices_txn(pending.conn, user_id, device_ids)
        for device_id in device_ids:
            self._invalidate_counts(user_id, device_id)
