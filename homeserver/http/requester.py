"""Who is making a request, as established by the route's declared auth."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requester:
    user_id: str
    device_id: str | None
    token_hash: str | None
    is_admin: bool = False
    is_guest: bool = False
    app_service_id: str | None = None
