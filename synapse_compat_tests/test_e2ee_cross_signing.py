"""Cross-signing: POST /keys/device_signing/upload and /keys/signatures/upload (cross_signing.yaml)."""

from __future__ import annotations

from typing import Any

from .client import V3
from .e2ee_support import CrossSigning, Ed25519, new_device_keys, query_keys, upload_keys
from .harness import Homeserver, SyncStream, User, create_room, join_room, password_auth
from .spec_schema import (
    assert_error,
    assert_request_matches_spec,
    assert_response_matches_spec,
    definition_ref,
    validate,
)

DEVICE_SIGNING = "/keys/device_signing/upload"
SIGNATURES = "/keys/signatures/upload"
UNSTABLE = "/_matrix/client/unstable"


def _assert_uia_challenge(resp: Any) -> dict[str, Any]:
    """cross_signing.yaml says the endpoint uses UIA but documents no 401 response: check the UIA
    API's own response shape (definitions/auth_response.yaml) instead."""
    assert resp.status == 401, f"expected a 401 UIA challenge, got {resp.describe()}"
    validate(definition_ref("definitions/auth_response.yaml"), resp.body, "UIA challenge")
    body: dict[str, Any] = resp.body
    assert ["m.login.password"] in [flow["stages"] for flow in body["flows"]], body
    assert isinstance(body.get("session"), str) and body["session"], body
    return body


def _post_signing(user: User, body: dict[str, Any], prefix: str = V3) -> Any:
    return user.client.post(f"{prefix}{DEVICE_SIGNING}", body)


def _setup(user: User) -> CrossSigning:
    keys = CrossSigning(user.user_id)
    body = keys.upload_body()
    assert_request_matches_spec("cross_signing.yaml", DEVICE_SIGNING, "POST", body)
    assert_response_matches_spec(_post_signing(user, body), "cross_signing.yaml", DEVICE_SIGNING)
    return keys


def _query(user: User, users: list[str]) -> dict[str, Any]:
    resp = query_keys(user, {u: [] for u in users})
    body: dict[str, Any] = assert_response_matches_spec(resp, "keys.yaml", "/keys/query")
    return body


def _signatures(user: User, body: dict[str, Any]) -> dict[str, Any]:
    assert_request_matches_spec("cross_signing.yaml", SIGNATURES, "POST", body)
    resp = user.client.post(f"{V3}{SIGNATURES}", body)
    out: dict[str, Any] = assert_response_matches_spec(resp, "cross_signing.yaml", SIGNATURES)
    return out


def test_first_upload_needs_no_uia_and_query_shows_keys(user: User, other_user: User) -> None:
    keys = _setup(user)
    own = _query(user, [user.user_id])
    assert own["master_keys"][user.user_id]["keys"] == keys.master_key()["keys"]
    assert own["self_signing_keys"][user.user_id]["keys"] == keys.self_signing_key()["keys"]
    assert own["user_signing_keys"][user.user_id]["keys"] == keys.user_signing_key()["keys"]
    theirs = _query(other_user, [user.user_id])
    assert theirs["master_keys"][user.user_id]["keys"] == keys.master_key()["keys"]
    assert user.user_id in theirs["self_signing_keys"]
    # The user-signing key is only shown to its owner.
    assert user.user_id not in theirs.get("user_signing_keys", {})


def test_identical_reupload_needs_no_uia(user: User) -> None:
    keys = _setup(user)
    resp = _post_signing(user, keys.upload_body())
    assert_response_matches_spec(resp, "cross_signing.yaml", DEVICE_SIGNING)
    resp = _post_signing(user, {"master_key": keys.master_key()})
    assert_response_matches_spec(resp, "cross_signing.yaml", DEVICE_SIGNING)


def test_element_bootstrap_unstable_then_v3(user: User) -> None:
    # Element Web uploads through the unstable prefix first, then repeats on v3.
    keys = CrossSigning(user.user_id)
    assert _post_signing(user, keys.upload_body(), UNSTABLE).status == 200
    assert_response_matches_spec(
        _post_signing(user, keys.upload_body()), "cross_signing.yaml", DEVICE_SIGNING
    )


def test_replacing_keys_needs_uia(user: User, other_user: User) -> None:
    _setup(user)
    new = CrossSigning(user.user_id)
    first = _post_signing(user, new.upload_body())
    challenge = _assert_uia_challenge(first)
    # A wrong password keeps the keys.
    bad_auth = {**password_auth(user, challenge["session"]), "password": "wrong password"}
    again = _post_signing(user, {**new.upload_body(), "auth": bad_auth})
    assert again.status == 401, again.describe()
    assert _query(other_user, [user.user_id])["master_keys"][user.user_id]["keys"] != new.master_key()["keys"]
    resp = _post_signing(user, {**new.upload_body(), "auth": password_auth(user, challenge["session"])})
    assert_response_matches_spec(resp, "cross_signing.yaml", DEVICE_SIGNING)
    assert _query(other_user, [user.user_id])["master_keys"][user.user_id]["keys"] == new.master_key()["keys"]


def test_replacing_only_self_signing_key_needs_uia(user: User) -> None:
    keys = _setup(user)
    keys.self_signing = Ed25519()
    first = _post_signing(user, {"self_signing_key": keys.self_signing_key()})
    _assert_uia_challenge(first)


def test_invalid_signature_on_self_signing_key(user: User) -> None:
    keys = CrossSigning(user.user_id)
    body = {"master_key": keys.master_key(), "self_signing_key": keys.key("self_signing", Ed25519())}
    assert_error(_post_signing(user, body), 400, "M_INVALID_SIGNATURE")
    unsigned_usk = {"master_key": keys.master_key(), "user_signing_key": keys.key("user_signing")}
    assert_error(_post_signing(user, unsigned_usk), 400, "M_INVALID_SIGNATURE")
    # Nothing was stored: a correct first upload still needs no UIA.
    assert _post_signing(user, keys.upload_body()).status == 200


def test_no_master_key_available(user: User) -> None:
    keys = CrossSigning(user.user_id)
    resp = _post_signing(user, {"self_signing_key": keys.self_signing_key()})
    assert_error(resp, 400, "M_MISSING_PARAM")


def test_invalid_cross_signing_key(user: User, other_user: User) -> None:
    theirs = CrossSigning(other_user.user_id)
    assert_error(_post_signing(user, {"master_key": theirs.master_key()}), 400, "M_INVALID_PARAM")
    keys = CrossSigning(user.user_id)
    wrong_usage = keys.master_key()
    wrong_usage["usage"] = ["self_signing"]
    assert_error(_post_signing(user, {"master_key": wrong_usage}), 400, "M_INVALID_PARAM")
    two_keys = keys.master_key()
    two_keys["keys"] = {**two_keys["keys"], "ed25519:other": "other"}
    assert_error(_post_signing(user, {"master_key": two_keys}), 400, "M_INVALID_PARAM")
    assert_error(user.client.post(f"{V3}{DEVICE_SIGNING}", data=b"{"), 400, "M_NOT_JSON")


def test_sign_own_device(user: User, other_user: User) -> None:
    device = new_device_keys(user)
    assert upload_keys(user, {"device_keys": device.signed()}).status == 200
    keys = _setup(user)
    ssk_id = f"ed25519:{keys.self_signing.public}"
    signed = keys.self_signing.sign(device.signed(), user.user_id, ssk_id)
    body = _signatures(user, {user.user_id: {user.device_id: signed}})
    assert not body.get("failures")
    shown = _query(other_user, [user.user_id])["device_keys"][user.user_id][user.device_id]
    assert shown["signatures"][user.user_id][ssk_id] == signed["signatures"][user.user_id][ssk_id]
    assert device.key_id in shown["signatures"][user.user_id]


def test_sign_master_key_with_device(user: User) -> None:
    device = new_device_keys(user)
    assert upload_keys(user, {"device_keys": device.signed()}).status == 200
    keys = _setup(user)
    signed = device.ed25519.sign(keys.master_key(), user.user_id, device.key_id)
    body = _signatures(user, {user.user_id: {keys.master.public: signed}})
    assert not body.get("failures")
    master = _query(user, [user.user_id])["master_keys"][user.user_id]
    assert (
        master["signatures"][user.user_id][device.key_id] == signed["signatures"][user.user_id][device.key_id]
    )


def test_invalid_device_signature_is_a_per_key_failure(user: User) -> None:
    device = new_device_keys(user)
    assert upload_keys(user, {"device_keys": device.signed()}).status == 200
    keys = _setup(user)
    ssk_id = f"ed25519:{keys.self_signing.public}"
    forged = device.signed()
    forged["signatures"][user.user_id][ssk_id] = Ed25519().signature(forged)
    body = _signatures(user, {user.user_id: {user.device_id: forged}})
    assert body["failures"][user.user_id][user.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    shown = _query(user, [user.user_id])["device_keys"][user.user_id][user.device_id]
    assert ssk_id not in shown["signatures"][user.user_id]


def test_signature_for_unknown_device_fails(user: User) -> None:
    device = new_device_keys(user)
    assert upload_keys(user, {"device_keys": device.signed()}).status == 200
    keys = _setup(user)
    ssk_id = f"ed25519:{keys.self_signing.public}"
    ghost = new_device_keys(user)
    ghost.device_id = "GHOSTDEVICE"
    signed = keys.self_signing.sign(ghost.signed(), user.user_id, ssk_id)
    body = _signatures(user, {user.user_id: {"GHOSTDEVICE": signed}})
    assert "GHOSTDEVICE" in body["failures"][user.user_id]


def test_sign_other_users_master_key(hs: Homeserver, user: User, other_user: User) -> None:
    mine = _setup(user)
    theirs = _setup(other_user)
    usk_id = f"ed25519:{mine.user_signing.public}"
    signed = mine.user_signing.sign(theirs.master_key(), user.user_id, usk_id)
    body = _signatures(user, {other_user.user_id: {theirs.master.public: signed}})
    assert not body.get("failures")
    seen = _query(user, [other_user.user_id])["master_keys"][other_user.user_id]
    assert seen["signatures"][user.user_id][usk_id] == signed["signatures"][user.user_id][usk_id]
    # Only the signer sees signatures made with their user-signing key.
    third = hs.register()
    seen_by_third = _query(third, [other_user.user_id])["master_keys"][other_user.user_id]
    assert user.user_id not in seen_by_third.get("signatures", {})
    # A forged one fails, per key (for a user we have not signed yet: Synapse skips the check when
    # it already holds a signature by the same key).
    third_keys = _setup(third)
    forged = third_keys.master_key()
    forged["signatures"] = {user.user_id: {usk_id: Ed25519().signature(forged)}}
    body = _signatures(user, {third.user_id: {third_keys.master.public: forged}})
    assert body["failures"][third.user_id][third_keys.master.public]["errcode"] == "M_INVALID_SIGNATURE"


def test_signatures_upload_bad_json(user: User) -> None:
    assert_error(user.client.post(f"{V3}{SIGNATURES}", data=b"not json"), 400, "M_NOT_JSON")


def test_cross_signing_upload_is_a_device_list_change(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    alice = SyncStream(user)
    alice.sync()
    _setup(other_user)
    alice.until(lambda b: other_user.user_id in (b.get("device_lists") or {}).get("changed", []))
