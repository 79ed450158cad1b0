"""Synapse's media admin API (docs/admin_api/media_admin_api.md, statistics.md): media of a room,
quarantine (by item, room, user; copies with the same content follow), protection, deletion,
remote cache purge, per-user usage statistics."""

from __future__ import annotations

import os
import time

from .admin_support import ADMIN_V1, assert_admin_only, download, split_mxc, upload
from .client import q
from .harness import Homeserver, User, create_room, send_event
from .spec_schema import assert_error


def _quarantine(admin: User, uri: str) -> None:
    server, media_id = split_mxc(uri)
    resp = admin.client.post(f"{ADMIN_V1}/media/quarantine/{q(server)}/{q(media_id)}", {})
    assert resp.status == 200 and resp.body == {}, resp.describe()


def _send_image(user: User, room_id: str, uri: str) -> str:
    return send_event(user, room_id, {"msgtype": "m.image", "body": "picture.png", "url": uri})


def test_non_admins_are_forbidden(hs: Homeserver, user: User) -> None:
    uri = upload(user)
    server, media_id = split_mxc(uri)
    room_id = create_room(user)
    assert_admin_only(
        hs,
        user,
        [
            ("GET", f"{ADMIN_V1}/room/{q(room_id)}/media", None),
            ("POST", f"{ADMIN_V1}/media/quarantine/{q(server)}/{q(media_id)}", {}),
            ("POST", f"{ADMIN_V1}/media/unquarantine/{q(server)}/{q(media_id)}", {}),
            ("POST", f"{ADMIN_V1}/room/{q(room_id)}/media/quarantine", {}),
            ("POST", f"{ADMIN_V1}/user/{q(user.user_id)}/media/quarantine", {}),
            ("POST", f"{ADMIN_V1}/media/protect/{q(media_id)}", {}),
            ("POST", f"{ADMIN_V1}/media/unprotect/{q(media_id)}", {}),
            ("DELETE", f"{ADMIN_V1}/media/{q(server)}/{q(media_id)}", {}),
            ("POST", f"{ADMIN_V1}/media/delete?before_ts=1", {}),
            ("POST", f"{ADMIN_V1}/purge_media_cache?before_ts=1", {}),
            ("GET", f"{ADMIN_V1}/statistics/users/media", None),
        ],
    )
    assert download(user, uri).status == 200


def test_quarantine_hides_media_from_everyone(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    data = os.urandom(200)
    uri = upload(user, data)
    assert download(user, uri).raw == data
    _quarantine(admin, uri)

    assert_error(download(user, uri), 404, "M_NOT_FOUND")
    assert_error(download(admin, uri), 404, "M_NOT_FOUND")
    # Only an admin may look at it, and only by asking explicitly.
    assert_error(download(user, uri, admin_unsafely_bypass_quarantine="true"), 400, "M_UNKNOWN")
    bypass = download(admin, uri, admin_unsafely_bypass_quarantine="true")
    assert bypass.status == 200 and bypass.raw == data, bypass.describe()

    # The same content uploaded again is quarantined at once.
    again = upload(user, data)
    assert_error(download(user, again), 404, "M_NOT_FOUND")

    server, media_id = split_mxc(uri)
    resp = admin.client.post(f"{ADMIN_V1}/media/unquarantine/{q(server)}/{q(media_id)}", {})
    assert resp.status == 200 and resp.body == {}, resp.describe()
    assert download(user, uri).raw == data


def test_media_info(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    data = b"some text"
    uri = upload(user, data, content_type="text/plain")
    server, media_id = split_mxc(uri)
    resp = admin.client.get(f"{ADMIN_V1}/media/{q(server)}/{q(media_id)}")
    assert resp.status == 200, resp.describe()
    info = resp.body["media_info"]
    assert info["media_id"] == media_id and info["user_id"] == user.user_id, resp.describe()
    assert info["media_type"] == "text/plain" and info["media_length"] == len(data), resp.describe()
    assert info["media_origin"] is None and info["quarantined_by"] is None, resp.describe()
    assert isinstance(info["created_ts"], int) and isinstance(info["sha256"], str), resp.describe()
    assert not info["safe_from_quarantine"], resp.describe()
    assert_error(admin.client.get(f"{ADMIN_V1}/media/{q(server)}/nosuchmedia"), 404, "M_NOT_FOUND")
    # Protecting unknown media is a 404 (Synapse says M_UNKNOWN "No row found").
    assert_error(admin.client.post(f"{ADMIN_V1}/media/protect/nosuchmedia", {}), 404)


def test_protected_media_cannot_be_quarantined(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    uri = upload(user)
    _, media_id = split_mxc(uri)
    resp = admin.client.post(f"{ADMIN_V1}/media/protect/{q(media_id)}", {})
    assert resp.status == 200 and resp.body == {}, resp.describe()
    _quarantine(admin, uri)
    assert download(user, uri).status == 200

    resp = admin.client.post(f"{ADMIN_V1}/media/unprotect/{q(media_id)}", {})
    assert resp.status == 200 and resp.body == {}, resp.describe()
    _quarantine(admin, uri)
    assert_error(download(user, uri), 404, "M_NOT_FOUND")


def test_room_media_list_and_quarantine(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(user, preset="private_chat")
    uris = [upload(user) for _ in range(2)]
    for uri in uris:
        _send_image(user, room_id, uri)
    remote_uri = "mxc://remote.example.org/someMediaId"
    _send_image(user, room_id, remote_uri)

    resp = admin.client.get(f"{ADMIN_V1}/room/{q(room_id)}/media")
    assert resp.status == 200, resp.describe()
    assert sorted(resp.body["local"]) == sorted(uris), resp.describe()
    assert resp.body["remote"] == [remote_uri], resp.describe()

    resp = admin.client.post(f"{ADMIN_V1}/room/{q(room_id)}/media/quarantine", {})
    assert resp.status == 200, resp.describe()
    count = resp.body["num_quarantined"]
    assert isinstance(count, int) and count >= 2, resp.describe()
    for uri in uris:
        assert_error(download(user, uri), 404, "M_NOT_FOUND")


def test_quarantine_user_media(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    uris = [upload(user) for _ in range(3)]
    resp = admin.client.post(f"{ADMIN_V1}/user/{q(user.user_id)}/media/quarantine", {})
    assert resp.status == 200 and resp.body == {"num_quarantined": 3}, resp.describe()
    for uri in uris:
        assert_error(download(user, uri), 404, "M_NOT_FOUND")


def test_delete_one_media(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    uri = upload(user)
    server, media_id = split_mxc(uri)
    path = f"{ADMIN_V1}/media/{q(server)}/{q(media_id)}"
    resp = admin.client.delete(path, {})
    assert resp.status == 200 and resp.body == {"deleted_media": [media_id], "total": 1}, resp.describe()
    assert_error(download(user, uri), 404, "M_NOT_FOUND")
    assert_error(admin.client.delete(path, {}), 404, "M_NOT_FOUND")
    resp = admin.client.delete(f"{ADMIN_V1}/media/remote.example.org/{q(media_id)}", {})
    assert_error(resp, 400)


def test_delete_old_large_media(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    big = upload(user, os.urandom(300_001))
    small = upload(user, os.urandom(10))
    later = int(time.time() * 1000) + 60_000
    resp = admin.client.post(f"{ADMIN_V1}/media/delete", {}, params={"before_ts": later, "size_gt": 300_000})
    assert resp.status == 200, resp.describe()
    _, big_id = split_mxc(big)
    assert big_id in resp.body["deleted_media"], resp.describe()
    assert resp.body["total"] == len(resp.body["deleted_media"]), resp.describe()
    assert_error(download(user, big), 404, "M_NOT_FOUND")
    assert download(user, small).status == 200

    media_delete = f"{ADMIN_V1}/media/delete"
    assert_error(admin.client.post(media_delete, {}), 400, "M_MISSING_PARAM")
    assert_error(admin.client.post(media_delete, {}, params={"before_ts": 1234}), 400, "M_INVALID_PARAM")
    assert_error(admin.client.post(media_delete, {}, params={"before_ts": -5}), 400, "M_INVALID_PARAM")


def test_purge_remote_media_cache(hs: Homeserver) -> None:
    admin = hs.register(admin=True)
    later = int(time.time() * 1000)
    resp = admin.client.post(f"{ADMIN_V1}/purge_media_cache", {}, params={"before_ts": later})
    assert resp.status == 200 and isinstance(resp.body["deleted"], int), resp.describe()
    assert_error(admin.client.post(f"{ADMIN_V1}/purge_media_cache", {}), 400, "M_MISSING_PARAM")


def test_user_media_statistics(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    upload(user, os.urandom(100))
    upload(user, os.urandom(50))
    upload(other_user, os.urandom(7))

    resp = admin.client.get(f"{ADMIN_V1}/statistics/users/media", params={"search_term": user.localpart})
    assert resp.status == 200, resp.describe()
    assert resp.body["total"] == 1, resp.describe()
    (entry,) = resp.body["users"]
    assert entry["user_id"] == user.user_id, resp.describe()
    assert entry["media_count"] == 2 and entry["media_length"] == 150, resp.describe()
    assert "displayname" in entry, resp.describe()

    everyone = admin.client.get(f"{ADMIN_V1}/statistics/users/media", params={"limit": 1})
    assert everyone.status == 200 and len(everyone.body["users"]) == 1, everyone.describe()
    assert everyone.body["total"] >= 2 and everyone.body["next_token"] == 1, everyone.describe()

    by_size = admin.client.get(
        f"{ADMIN_V1}/statistics/users/media", params={"order_by": "media_length", "dir": "b", "limit": 1000}
    )
    sizes = [u["media_length"] for u in by_size.body["users"]]
    assert sizes == sorted(sizes, reverse=True), by_size.describe()

    stats = f"{ADMIN_V1}/statistics/users/media"
    assert_error(admin.client.get(stats, params={"order_by": "bogus"}), 400, "M_INVALID_PARAM")
    assert_error(admin.client.get(stats, params={"limit": "-1"}), 400, "M_INVALID_PARAM")
