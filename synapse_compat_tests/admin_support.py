"""Helpers for the admin API tests (rooms, media, server notices): polling a background task's
status, uploading media, and the non-admin checks every admin endpoint shares."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from .client import Response, q
from .harness import Homeserver, User
from .spec_schema import assert_error

ADMIN_V1 = "/_synapse/admin/v1"
ADMIN_V2 = "/_synapse/admin/v2"
MEDIA_V3 = "/_matrix/media/v3"
MEDIA_V1_AUTH = "/_matrix/client/v1/media"

# A background task (room deletion, purge) is polled through its status endpoint until it ends;
# the deadline only bounds a hung server, it is not a speed assertion.
TASK_DEADLINE_S = 60.0


def poll(fetch: Callable[[], Response], done: Callable[[Response], bool], what: str) -> Response:
    deadline = time.monotonic() + TASK_DEADLINE_S
    delay = 0.02
    while True:
        resp = fetch()
        if done(resp):
            return resp
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not finish: {resp.describe()}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def assert_admin_only(hs: Homeserver, user: User, calls: Iterable[tuple[str, str, Any]]) -> None:
    """Each (method, path, body) answers 403 M_FORBIDDEN to a non-admin and 401 without a token,
    before looking at the body or the path's ids."""
    anonymous = hs.client()
    for method, path, body in calls:
        kwargs: dict[str, Any] = {} if body is None else {"json_body": body}
        resp = user.client.request(method, path, **kwargs)
        assert_error(resp, 403, "M_FORBIDDEN")
        resp = anonymous.request(method, path, **kwargs)
        assert_error(resp, 401, "M_MISSING_TOKEN")


def upload(user: User, data: bytes | None = None, content_type: str = "application/octet-stream") -> str:
    """POST /_matrix/media/v3/upload; returns the mxc:// URI."""
    payload = data if data is not None else os.urandom(64)
    resp = user.client.post(f"{MEDIA_V3}/upload", data=payload, headers={"Content-Type": content_type})
    assert resp.status == 200, resp.describe()
    uri = resp.body["content_uri"]
    assert isinstance(uri, str) and uri.startswith("mxc://"), resp.describe()
    return uri


def split_mxc(uri: str) -> tuple[str, str]:
    server, _, media_id = uri[len("mxc://") :].partition("/")
    return server, media_id


def download(user: User, uri: str, **params: Any) -> Response:
    server, media_id = split_mxc(uri)
    return user.client.get(f"{MEDIA_V1_AUTH}/download/{q(server)}/{q(media_id)}", params=params or None)
