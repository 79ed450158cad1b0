"""Synapse's admin API "server administrator" flag: GET/PUT /_synapse/admin/v1/users/{userId}/admin.

Element asks GET when it opens a user's profile; a non-admin must get 403 M_FORBIDDEN (not 404
M_UNRECOGNIZED), an admin `{"admin": bool}`. PUT follows Synapse: only admins, only local users,
and an admin may not demote themselves.
"""

from __future__ import annotations

from .client import q
from .harness import Homeserver, User
from .spec_schema import assert_error

ADMIN_API = "/_synapse/admin/v1"


def _path(user_id: str) -> str:
    return f"{ADMIN_API}/users/{q(user_id)}/admin"


def _get_admin(requester: User, target: str) -> bool:
    resp = requester.client.get(_path(target))
    assert resp.status == 200, resp.describe()
    assert set(resp.body) == {"admin"}, resp.describe()
    assert isinstance(resp.body["admin"], bool), resp.describe()
    return bool(resp.body["admin"])


def test_non_admin_is_forbidden(hs: Homeserver, user: User, other_user: User) -> None:
    assert_error(user.client.get(_path(other_user.user_id)), 403, "M_FORBIDDEN")
    assert_error(user.client.get(_path(user.user_id)), 403, "M_FORBIDDEN")
    assert_error(user.client.put(_path(user.user_id), {"admin": True}), 403, "M_FORBIDDEN")
    assert_error(hs.client().get(_path(user.user_id)), 401, "M_MISSING_TOKEN")


def test_admin_reads_the_flag(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    assert _get_admin(admin, admin.user_id) is True
    assert _get_admin(admin, user.user_id) is False


def test_promote_and_demote(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    resp = admin.client.put(_path(user.user_id), {"admin": True})
    assert resp.status == 200 and resp.body == {}, resp.describe()
    assert _get_admin(admin, user.user_id) is True
    # The promoted user's existing access token carries the new rights at once.
    assert _get_admin(user, other_user.user_id) is False

    resp = admin.client.put(_path(user.user_id), {"admin": False})
    assert resp.status == 200 and resp.body == {}, resp.describe()
    assert _get_admin(admin, user.user_id) is False
    assert_error(user.client.get(_path(other_user.user_id)), 403, "M_FORBIDDEN")


def test_admin_may_not_demote_themselves(hs: Homeserver) -> None:
    admin = hs.register(admin=True)
    assert_error(admin.client.put(_path(admin.user_id), {"admin": False}), 400, "M_UNKNOWN")
    assert _get_admin(admin, admin.user_id) is True
    # Re-asserting one's own admin flag is harmless.
    resp = admin.client.put(_path(admin.user_id), {"admin": True})
    assert resp.status == 200, resp.describe()


def test_bad_requests(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    assert_error(admin.client.put(_path(user.user_id), {}), 400, "M_MISSING_PARAM")
    remote = "@someone:remote.example.org"
    assert_error(admin.client.get(_path(remote)), 400)
    assert_error(admin.client.put(_path(remote), {"admin": True}), 400)
    # Synapse answers a StoreError ("No row found") with M_UNKNOWN here; we say M_NOT_FOUND.
    nobody = f"@nobody-{user.localpart}:{user.server_name}"
    assert_error(admin.client.put(_path(nobody), {"admin": True}), 404)
