"""`/versions` → `unstable_features` (MSC1497): each flag a server advertises as true must work.

Clients act on these flags: Element sets up cross-signing after registration only when
`org.matrix.e2e_cross_signing` is true, uses authenticated media on `org.matrix.msc3916.stable`,
private receipts on `org.matrix.msc2285.stable`, and so on. `FEATURE_CHECKS` exercises every flag we
know how to test; a flag the server does not advertise is skipped (servers choose what they
support). The flags Synapse has advertised as true for years must be true here too.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from .client import V3, q
from .e2ee_support import CrossSigning, new_device_keys, query_keys, upload_keys
from .harness import (
    Homeserver,
    SyncStream,
    User,
    create_room,
    join_room,
    put_state,
    room_path,
    send_text,
)
from .spec_schema import assert_error, assert_response_matches_spec
from .test_directory import (
    local_aliases,
    new_alias,
    public_room_ids,
    public_rooms_post,
    put_alias,
    set_visibility,
)
from .test_receipts_typing_presence import fresh_initial_sync, post_receipt, receipts_in, two_in_a_room
from .test_relations import ids, react, relations, thread_reply

# Advertised as true by Synapse (1.100 and later) without any configuration.
SYNAPSE_DEFAULTS = (
    "org.matrix.e2e_cross_signing",
    "org.matrix.msc2432",
    "org.matrix.msc2285.stable",
    "org.matrix.msc3827.stable",
    "org.matrix.msc3440.stable",
    "org.matrix.msc3771",
    "org.matrix.msc3981",
)


def unstable_features(hs: Homeserver) -> dict[str, bool]:
    resp = hs.client().get("/_matrix/client/versions")
    body = assert_response_matches_spec(resp, "versions.yaml", "/_matrix/client/versions")
    features: dict[str, bool] = body.get("unstable_features", {})
    return features


# --------------------------------------------------------------------------- one check per flag


def check_cross_signing(hs: Homeserver) -> None:
    """Upload cross-signing keys, sign the device with the self-signing key; /keys/query shows
    the keys and the signature (what Element's bootstrap does)."""
    user = hs.register()
    device = new_device_keys(user)
    assert upload_keys(user, {"device_keys": device.signed()}).status == 200
    keys = CrossSigning(user.user_id)
    resp = user.client.post(f"{V3}/keys/device_signing/upload", keys.upload_body())
    assert resp.status == 200, resp.describe()
    signed = keys.self_signing.sign(device.signed(), user.user_id, f"ed25519:{keys.self_signing.public}")
    resp = user.client.post(f"{V3}/keys/signatures/upload", {user.user_id: {user.device_id: signed}})
    assert resp.status == 200 and not resp.body.get("failures"), resp.describe()
    body = query_keys(user, {user.user_id: []}).body
    assert body["master_keys"][user.user_id]["keys"] == keys.master_key()["keys"]
    sigs = body["device_keys"][user.user_id][user.device_id]["signatures"][user.user_id]
    assert f"ed25519:{keys.self_signing.public}" in sigs, body


def check_room_aliases(hs: Homeserver) -> None:
    """MSC2432: GET /rooms/{roomId}/aliases, and canonical aliases must point to the room."""
    user = hs.register()
    room_id, other_room = create_room(user), create_room(user)
    alias, other_alias = new_alias(user), new_alias(user)
    put_alias(user, alias, room_id)
    put_alias(user, other_alias, other_room)
    assert local_aliases(user, room_id) == [alias]
    put_state(user, room_id, "m.room.canonical_alias", {"alias": alias})
    resp = user.client.put(
        room_path(room_id, "state", "m.room.canonical_alias", ""),
        {"alias": alias, "alt_aliases": [other_alias]},
    )
    assert_error(resp, 400, "M_BAD_ALIAS")


def check_private_receipts(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    event_id = send_text(alice, room_id, "read me")
    post_receipt(bob, room_id, event_id, "m.read.private")
    SyncStream(bob).until(
        lambda b: any(r[:3] == (event_id, "m.read.private", bob.user_id) for r in receipts_in(b, room_id))
    )
    assert all(r[1] != "m.read.private" for r in receipts_in(fresh_initial_sync(alice), room_id))


def check_room_type_filter(hs: Homeserver) -> None:
    """MSC3827: publicRooms filtered by room type (null = rooms without a type)."""
    user = hs.register()
    space = create_room(user, preset="public_chat", creation_content={"type": "m.space"})
    room = create_room(user, preset="public_chat")
    marker = f"msc3827 {secrets.token_hex(4)}"
    for room_id in (space, room):
        put_state(user, room_id, "m.room.name", {"name": marker})
        set_visibility(user, room_id, "public")
    spaces = public_room_ids(
        public_rooms_post(user, {"filter": {"generic_search_term": marker, "room_types": ["m.space"]}})
    )
    assert spaces == [space]
    plain = public_room_ids(
        public_rooms_post(user, {"filter": {"generic_search_term": marker, "room_types": [None]}})
    )
    assert plain == [room]


def check_threads(hs: Homeserver) -> None:
    user = hs.register()
    room_id = create_room(user)
    root = send_text(user, room_id, "root")
    reply = thread_reply(user, room_id, root, "in thread")
    assert ids(relations(user, room_id, root, "m.thread")["chunk"]) == [reply]
    resp = user.client.get(f"/_matrix/client/v1/rooms/{q(room_id)}/threads")
    body = assert_response_matches_spec(resp, "threads_list.yaml", "/rooms/{roomId}/threads")
    assert [e["event_id"] for e in body["chunk"]] == [root]


def check_threaded_receipts(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    root = send_text(alice, room_id, "root")
    reply = thread_reply(alice, room_id, root, "reply")
    post_receipt(bob, room_id, reply, "m.read", thread_id=root)
    found = SyncStream(alice).until(
        lambda b: [r for r in receipts_in(b, room_id) if r[:3] == (reply, "m.read", bob.user_id)]
    )
    assert found[0][3].get("thread_id") == root


def check_thread_notification_counts(hs: Homeserver) -> None:
    """MSC3773: with `unread_thread_notifications` in the filter, counts come per thread."""
    alice, bob = hs.register(), hs.register()
    room_id = create_room(alice, preset="private_chat", invite=[bob.user_id])
    join_room(bob, room_id)
    root = send_text(alice, room_id, "root")
    thread_reply(alice, room_id, root, "reply")
    stream = SyncStream(bob, filter={"room": {"timeline": {"unread_thread_notifications": True}}})

    def thread_count(body: dict[str, Any]) -> int:
        room = body.get("rooms", {}).get("join", {}).get(room_id) or {}
        return int(room.get("unread_thread_notifications", {}).get(root, {}).get("notification_count", 0))

    assert stream.until(thread_count) >= 1


def check_recursive_relations(hs: Homeserver) -> None:
    user = hs.register()
    room_id = create_room(user)
    root = send_text(user, room_id, "root")
    reply = thread_reply(user, room_id, root, "reply")
    reaction = react(user, room_id, reply, "👍")
    assert ids(relations(user, room_id, root, recurse="true")["chunk"]) == [reaction, reply]


def check_authenticated_media(hs: Homeserver) -> None:
    user = hs.register()
    data = secrets.token_bytes(64)
    resp = user.client.post(
        "/_matrix/media/v3/upload", data=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert resp.status == 200, resp.describe()
    server, media_id = resp.body["content_uri"][len("mxc://") :].split("/", 1)
    path = f"/_matrix/client/v1/media/download/{q(server)}/{q(media_id)}"
    resp = user.client.get(path)
    assert resp.status == 200 and resp.raw == data, resp.describe()
    assert_error(hs.client().get(path), 401, "M_MISSING_TOKEN")


def check_simplified_sliding_sync(hs: Homeserver) -> None:
    alice = hs.register()
    room_id = create_room(alice)
    event_id = send_text(alice, room_id, "hello sliding sync")
    body = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1, "required_state": []}}}
    status, resp, _ = alice.client.post("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", body)
    assert status == 200, resp
    assert resp["lists"]["all"]["ops"][0]["room_ids"] == [room_id]
    assert [e["event_id"] for e in resp["rooms"][room_id]["timeline"]] == [event_id]


FEATURE_CHECKS: dict[str, Callable[[Homeserver], None]] = {
    "org.matrix.e2e_cross_signing": check_cross_signing,
    "org.matrix.msc2432": check_room_aliases,
    "org.matrix.msc2285.stable": check_private_receipts,
    "org.matrix.msc3827.stable": check_room_type_filter,
    "org.matrix.msc3440.stable": check_threads,
    "org.matrix.msc3771": check_threaded_receipts,
    "org.matrix.msc3773": check_thread_notification_counts,
    "org.matrix.msc3981": check_recursive_relations,
    "org.matrix.msc3916.stable": check_authenticated_media,
    "org.matrix.simplified_msc3575": check_simplified_sliding_sync,
}


@pytest.mark.parametrize("feature", sorted(FEATURE_CHECKS))
def test_advertised_feature_works(hs: Homeserver, feature: str) -> None:
    if not unstable_features(hs).get(feature):
        pytest.skip(f"{feature} not advertised by this server")
    FEATURE_CHECKS[feature](hs)


def test_long_standing_features_advertised(hs: Homeserver) -> None:
    features = unstable_features(hs)
    missing = [f for f in SYNAPSE_DEFAULTS if features.get(f) is not True]
    assert not missing, f"not advertised: {missing} (got {features})"


def test_login_token_flag_matches_the_endpoint(hs: Homeserver, user: User) -> None:
    """`org.matrix.msc3882` says whether POST /login/get_token is served (and the capability)."""
    enabled = unstable_features(hs).get("org.matrix.msc3882", False)
    caps = user.client.get(f"{V3}/capabilities").body["capabilities"]
    if enabled:
        assert caps.get("m.get_login_token", {}).get("enabled") is True
        return
    assert caps.get("m.get_login_token", {"enabled": False}).get("enabled") is False
    resp = user.client.post("/_matrix/client/v1/login/get_token", {})
    assert resp.status in (404, 405), resp.describe()
