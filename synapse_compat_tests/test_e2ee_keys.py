"""Device keys: POST /keys/upload, /keys/query, /keys/claim and GET /keys/changes (keys.yaml)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .client import V3, q
from .e2ee_support import OTK_ALG, DeviceKeys, claim_keys, new_device_keys, query_keys, upload_keys
from .harness import (
    Homeserver,
    SyncStream,
    User,
    create_room,
    join_room,
    password_auth,
    sync_once,
)
from .spec_schema import assert_error, assert_request_matches_spec, assert_response_matches_spec

UPLOAD, QUERY, CLAIM, CHANGES = "/keys/upload", "/keys/query", "/keys/claim", "/keys/changes"


def _upload(user: User, body: dict[str, Any]) -> dict[str, Any]:
    assert_request_matches_spec("keys.yaml", UPLOAD, "POST", body)
    body_out: dict[str, Any] = assert_response_matches_spec(upload_keys(user, body), "keys.yaml", UPLOAD)
    return body_out


def _query(user: User, device_keys: dict[str, list[str]]) -> dict[str, Any]:
    body: dict[str, Any] = assert_response_matches_spec(query_keys(user, device_keys), "keys.yaml", QUERY)
    return body


def _claim(user: User, wanted: dict[str, dict[str, str]]) -> dict[str, Any]:
    body: dict[str, Any] = assert_response_matches_spec(claim_keys(user, wanted), "keys.yaml", CLAIM)
    return body


def _setup_device(user: User, otks: int = 0, fallback: bool = False) -> DeviceKeys:
    keys = new_device_keys(user)
    body: dict[str, Any] = {"device_keys": keys.signed()}
    if otks:
        body["one_time_keys"] = keys.one_time_keys(otks)
    if fallback:
        body["fallback_keys"] = keys.one_time_keys(1, fallback=True)
    counts = _upload(user, body)["one_time_key_counts"]
    assert counts.get(OTK_ALG, 0) == otks
    return keys


def test_upload_and_query_device_keys(user: User, other_user: User) -> None:
    keys = _setup_device(user, otks=3)
    for viewer in (user, other_user):
        body = _query(viewer, {user.user_id: []})
        device = body["device_keys"][user.user_id][user.device_id]
        signed = keys.signed()
        for field in ("user_id", "device_id", "algorithms", "keys"):
            assert device[field] == signed[field]
        assert (
            device["signatures"][user.user_id][keys.key_id] == signed["signatures"][user.user_id][keys.key_id]
        )
        assert isinstance(device.get("unsigned", {}), dict)
    # Asking for one device by id; unknown devices and users are left out, not failures.
    body = _query(other_user, {user.user_id: [user.device_id, "NOSUCHDEVICE"]})
    assert set(body["device_keys"][user.user_id]) == {user.device_id}
    nobody = f"@nobody-{user.localpart}:{user.server_name}"
    body = _query(other_user, {nobody: []})
    assert not body["device_keys"].get(nobody)
    assert not body.get("failures")


def test_upload_counts_accumulate_and_reupload_is_idempotent(user: User) -> None:
    keys = _setup_device(user)
    batch = keys.one_time_keys(5)
    assert _upload(user, {"one_time_keys": batch})["one_time_key_counts"][OTK_ALG] == 5
    # Sending the very same keys again (a retried request) changes nothing.
    assert _upload(user, {"one_time_keys": batch})["one_time_key_counts"][OTK_ALG] == 5
    assert _upload(user, {})["one_time_key_counts"].get(OTK_ALG, 0) == 5


def test_upload_conflicting_one_time_key(user: User) -> None:
    keys = _setup_device(user)
    batch = keys.one_time_keys(1)
    _upload(user, {"one_time_keys": batch})
    ((key_id, key),) = batch.items()
    changed = keys.ed25519.sign({"key": "different" + key["key"][9:]}, user.user_id, keys.key_id)
    # Synapse answers M_UNKNOWN here; we say M_INVALID_PARAM. Either way: 400, key kept.
    assert_error(upload_keys(user, {"one_time_keys": {key_id: changed}}), 400)


def test_upload_bad_self_signature(hs: Homeserver, user: User) -> None:
    keys = new_device_keys(user)
    forged = keys.signed()
    forged["signatures"] = {user.user_id: {keys.key_id: new_device_keys(user).ed25519.signature(forged)}}
    resp = upload_keys(user, {"device_keys": forged})
    if hs.is_synapse:
        # Synapse does not check the device's self-signature (clients do, on /keys/query).
        assert resp.status == 200, resp.describe()
        return
    assert_error(resp, 400, "M_INVALID_SIGNATURE")
    assert not _query(user, {user.user_id: []})["device_keys"].get(user.user_id)


def test_upload_device_keys_of_someone_else(user: User, other_user: User) -> None:
    theirs = DeviceKeys(other_user.user_id, user.device_id).signed()
    assert_error(upload_keys(user, {"device_keys": theirs}), 400, ("M_BAD_JSON", "M_INVALID_PARAM"))
    other_device = DeviceKeys(user.user_id, "NOTMYDEVICE").signed()
    assert_error(upload_keys(user, {"device_keys": other_device}), 400, ("M_BAD_JSON", "M_INVALID_PARAM"))


def test_upload_bad_json(user: User) -> None:
    assert_error(user.client.post(f"{V3}/keys/upload", data=b"{not json"), 400, "M_NOT_JSON")
    assert_error(user.client.post(f"{V3}/keys/upload", [1, 2]), 400, ("M_BAD_JSON", "M_NOT_JSON"))
    assert_error(
        upload_keys(user, {"one_time_keys": {"no-colon-here": {"key": "x"}}}),
        400,
        ("M_BAD_JSON", "M_INVALID_PARAM"),
    )


def test_query_bad_request(user: User) -> None:
    assert_error(user.client.post(f"{V3}/keys/query", {}), 400, ("M_BAD_JSON", "M_MISSING_PARAM"))
    assert_error(user.client.post(f"{V3}/keys/query", {"device_keys": []}), 400, "M_BAD_JSON")
    assert_error(user.client.post(f"{V3}/keys/query", data=b"]"), 400, "M_NOT_JSON")
    assert_error(user.client.post(f"{V3}/keys/query", {"device_keys": {}}, access_token=None), 401)


def test_claim_one_time_keys_in_order_then_fallback(user: User, other_user: User) -> None:
    keys = new_device_keys(user)
    first, second = keys.one_time_keys(2), keys.one_time_keys(2)
    fallback = keys.one_time_keys(1, fallback=True)
    _upload(user, {"device_keys": keys.signed(), "one_time_keys": first, "fallback_keys": fallback})
    _upload(user, {"one_time_keys": second})
    wanted = {user.user_id: {user.device_id: OTK_ALG}}
    claimed: list[str] = []
    for _ in range(4):
        got = _claim(other_user, wanted)["one_time_keys"][user.user_id][user.device_id]
        ((key_id, key),) = got.items()
        assert key.get("fallback") is not True
        claimed.append(key_id)
    # Keys of the first upload go first; none twice.
    assert set(claimed[:2]) == set(first) and set(claimed[2:]) == set(second)
    # Out of one-time keys: the fallback key, as often as asked.
    for _ in range(2):
        got = _claim(other_user, wanted)["one_time_keys"][user.user_id][user.device_id]
        assert got == fallback
    assert _upload(user, {})["one_time_key_counts"].get(OTK_ALG, 0) == 0


def test_claim_without_keys_and_for_unknown_devices(user: User, other_user: User) -> None:
    _setup_device(user)
    nobody = f"@nobody-{user.localpart}:{user.server_name}"
    wanted = {
        user.user_id: {user.device_id: OTK_ALG, "NOSUCHDEVICE": OTK_ALG},
        nobody: {"DEVICE": OTK_ALG},
    }
    body = _claim(other_user, wanted)
    assert not body["one_time_keys"].get(user.user_id, {}).get(user.device_id)
    assert not body["one_time_keys"].get(user.user_id, {}).get("NOSUCHDEVICE")
    assert not body["one_time_keys"].get(nobody)
    assert not body.get("failures")


def test_claim_bad_request(hs: Homeserver, user: User) -> None:
    resp = user.client.post(f"{V3}/keys/claim", {})
    if hs.is_synapse:
        # Synapse reads a missing (required) `one_time_keys` as empty.
        assert resp.status == 200, resp.describe()
    else:
        assert_error(resp, 400, ("M_BAD_JSON", "M_MISSING_PARAM"))
        assert_error(user.client.post(f"{V3}/keys/claim", {"one_time_keys": []}), 400, "M_BAD_JSON")
    assert_error(user.client.post(f"{V3}/keys/claim", data=b"nope"), 400, "M_NOT_JSON")
    assert_error(user.client.post(f"{V3}/keys/claim", {"one_time_keys": {}}, access_token=None), 401)


def test_concurrent_claims_never_share_a_key(hs: Homeserver, user: User) -> None:
    """50 claims at once for one device with 30 one-time keys: 30 distinct keys, then the fallback."""
    keys = new_device_keys(user)
    fallback = keys.one_time_keys(1, fallback=True)
    _upload(
        user,
        {"device_keys": keys.signed(), "one_time_keys": keys.one_time_keys(30), "fallback_keys": fallback},
    )
    claimers = [hs.register() for _ in range(5)]
    wanted = {user.user_id: {user.device_id: OTK_ALG}}

    def claim(i: int) -> dict[str, Any]:
        resp = claim_keys(claimers[i % len(claimers)], wanted)
        assert resp.status == 200, resp.describe()
        result: dict[str, Any] = resp.body["one_time_keys"][user.user_id][user.device_id]
        return result

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(claim, range(50)))
    one_time = [next(iter(r)) for r in results if r != fallback]
    assert len(one_time) == 30
    assert len(set(one_time)) == 30, "a one-time key was handed out twice"
    assert sum(1 for r in results if r == fallback) == 20


def test_sync_reports_key_counts(user: User, other_user: User) -> None:
    # Each /sync differs in `timeout` (ignored by an initial sync): Synapse answers identical
    # requests from a response cache for a while.
    keys = _setup_device(user, otks=2, fallback=True)
    body = sync_once(user, timeout=1)
    assert body.get("device_one_time_keys_count", {}).get(OTK_ALG) == 2
    assert body.get("device_unused_fallback_key_types") == [OTK_ALG]
    wanted = {user.user_id: {user.device_id: OTK_ALG}}
    for _ in range(3):
        _claim(other_user, wanted)
    body = sync_once(user, timeout=2)
    assert body.get("device_one_time_keys_count", {}).get(OTK_ALG, 0) == 0
    assert body.get("device_unused_fallback_key_types") == []
    # A new fallback key is unused again.
    _upload(user, {"fallback_keys": keys.one_time_keys(1, fallback=True)})
    assert sync_once(user, timeout=3).get("device_unused_fallback_key_types") == [OTK_ALG]


def test_sync_key_counts_also_on_empty_incremental_sync(user: User) -> None:
    _setup_device(user, otks=4)
    stream = SyncStream(user)
    stream.sync()
    body = stream.sync(timeout_ms=50)
    assert body.get("device_one_time_keys_count", {}).get(OTK_ALG) == 4


def test_key_changes_and_device_lists(hs: Homeserver, user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    alice = SyncStream(user)
    alice.sync()
    start = alice.since
    assert start is not None
    _setup_device(other_user)
    alice.until(lambda b: other_user.user_id in (b.get("device_lists") or {}).get("changed", []))
    resp = user.client.get(f"{V3}/keys/changes", params={"from": start, "to": alice.since})
    body = assert_response_matches_spec(resp, "keys.yaml", CHANGES)
    assert other_user.user_id in body["changed"]
    # Someone who shares no room with us does not show up.
    stranger = hs.register()
    _setup_device(stranger)
    resp = user.client.get(f"{V3}/keys/changes", params={"from": start, "to": alice.sync()["next_batch"]})
    assert stranger.user_id not in assert_response_matches_spec(resp, "keys.yaml", CHANGES)["changed"]


def test_key_changes_bad_request(user: User) -> None:
    assert_error(user.client.get(f"{V3}/keys/changes"), 400, ("M_MISSING_PARAM", "M_INVALID_PARAM"))


def test_device_lists_on_membership(hs: Homeserver, user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    _setup_device(other_user)
    alice = SyncStream(user)
    alice.sync()
    join_room(other_user, room_id)
    alice.until(lambda b: other_user.user_id in (b.get("device_lists") or {}).get("changed", []))
    resp = other_user.client.post(f"{V3}/rooms/{q(room_id)}/leave", {})
    assert resp.status == 200, resp.describe()
    alice.until(lambda b: other_user.user_id in (b.get("device_lists") or {}).get("left", []))


def test_deleted_device_keys_are_gone(hs: Homeserver, user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    second = hs.login_ok(other_user)
    _setup_device(second, otks=2)
    assert second.device_id in _query(user, {other_user.user_id: []})["device_keys"][other_user.user_id]
    alice = SyncStream(user)
    alice.sync()
    path = f"{V3}/devices/{q(second.device_id)}"
    first = other_user.client.delete(path, {})
    assert first.status == 401, first.describe()
    resp = other_user.client.delete(path, {"auth": password_auth(other_user, first.body["session"])})
    assert resp.status == 200, resp.describe()
    alice.until(lambda b: other_user.user_id in (b.get("device_lists") or {}).get("changed", []))
    devices = _query(user, {other_user.user_id: []})["device_keys"].get(other_user.user_id, {})
    assert second.device_id not in devices
    claimed = _claim(user, {other_user.user_id: {second.device_id: OTK_ALG}})["one_time_keys"]
    assert not claimed.get(other_user.user_id)


def test_r0_paths(user: User) -> None:
    # Hydrogen uploads keys through the r0 prefix.
    keys = new_device_keys(user)
    resp = user.client.post("/_matrix/client/r0/keys/upload", {"device_keys": keys.signed()})
    assert resp.status == 200, resp.describe()
    assert user.device_id in _query(user, {user.user_id: []})["device_keys"][user.user_id]
