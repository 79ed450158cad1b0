"""Server discovery: /versions, .well-known, capabilities.

Spec files: versions.yaml, wellknown.yaml, capabilities.yaml.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import not_found
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS
from homeserver.http.routing import CLIENT_V3_R0, ApiRequest, Auth, Router

routes = Router()

# Spec versions whose client features we serve. Clients refuse servers that list none they know.
SUPPORTED_VERSIONS = [
    "r0.0.1",
    "r0.1.0",
    "r0.2.0",
    "r0.3.0",
    "r0.4.0",
    "r0.5.0",
    "r0.6.0",
    "r0.6.1",
    "v1.1",
    "v1.2",
    "v1.3",
    "v1.4",
    "v1.5",
    "v1.6",
    "v1.7",
    "v1.8",
    "v1.9",
    "v1.10",
    "v1.11",
]


@routes.get("/_matrix/client/versions", auth=Auth.NONE, prefixes=())
async def getVersions(req: ApiRequest) -> dict[str, Any]:
    return {"versions": SUPPORTED_VERSIONS, "unstable_features": {}}


@routes.get("/.well-known/matrix/client", auth=Auth.NONE, prefixes=())
async def getWellknown(req: ApiRequest) -> dict[str, Any]:
    base_url = req.services.config.public_baseurl
    if not base_url:
        raise not_found("No .well-known configured")
    return {"m.homeserver": {"base_url": base_url.rstrip("/")}}


@routes.get("/capabilities", auth=Auth.USER, prefixes=CLIENT_V3_R0)
async def getCapabilities(req: ApiRequest) -> dict[str, Any]:
    config = req.services.config
    return {
        "capabilities": {
            "m.change_password": {"enabled": True},
            "m.room_versions": {
                "default": config.default_room_version or DEFAULT_ROOM_VERSION,
                # v12 (room ids from create event hashes) is not creatable yet.
                "available": {
                    v: "stable" for v, rv in KNOWN_ROOM_VERSIONS.items() if not rv.room_ids_as_hashes
                },
            },
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": False},
        }
    }
