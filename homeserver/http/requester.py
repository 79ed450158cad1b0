"""Who is making a request, as established by the route's declared auth (see http/auth.py).

A `Requester` is a user: logged in with their own access token, or an appservice acting as its
sender or masquerading as a user of its namespace (then `app_service_id` is set). A request from
another homeserver (X-Matrix) is a `ServerRequester`: a server is not a user, and keeping it apart
lets every user-facing service rely on `user_id` being there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requester:
    user_id: str
    device_id: str | None
    token_hash: str | None  # None for appservice requests (their as_token is not a device token)
    is_admin: bool = False
    is_guest: bool = False
    # The appservice that made the request (as_token), or that registered this user.
    app_service_id: str | None = None


@dataclass(frozen=True, slots=True)
class ServerRequester:
    server_name: str  # the X-Matrix origin, its signature verified
