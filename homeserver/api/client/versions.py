"""Server discovery: /versions, .well-known, capabilities.

Spec files: versions.yaml, wellknown.yaml, capabilities.yaml.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

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


# Unstable features (MSC1497): clients such as Element decide on behaviour from these flags, e.g.
# without `org.matrix.e2e_cross_signing` Element says "Your homeserver does not support
# cross-signing" and never sets it up. Only what works here is listed as true, each flag backed by
# a check in synapse_compat_tests/test_unstable_features.py; false says "asked, not supported" for
# flags Element and Element X read. Not listed (so also false): label-based filtering (MSC2326),
# mutual rooms (MSC2666), forced encryption presets, busy presence, appservice ping, profile fields
# (MSC4133).
UNSTABLE_FEATURES: dict[str, bool] = {
    # Cross-signing keys and signatures (MSC1756).
    "org.matrix.e2e_cross_signing": True,
    # GET /rooms/{roomId}/aliases and alias checks on m.room.canonical_alias (MSC2432).
    "org.matrix.msc2432": True,
    # Private read receipts, m.read.private (MSC2285).
    "org.matrix.msc2285.stable": True,
    # publicRooms filtered by room type, e.g. spaces (MSC3827).
    "org.matrix.msc3827.stable": True,
    # Threads: m.thread relations, /threads (MSC3440).
    "org.matrix.msc3440.stable": True,
    # Threaded read receipts (MSC3771) and per-thread notification counts in /sync (MSC3773).
    "org.matrix.msc3771": True,
    "org.matrix.msc3773": True,
    # /relations?recurse=true (MSC3981).
    "org.matrix.msc3981": True,
    # Authenticated media under /_matrix/client/v1/media (MSC3916; stable in v1.11).
    "org.matrix.msc3916.stable": True,
    # Simplified sliding sync (MSC4186), as Element X uses it (docs/sliding-sync.md).
    "org.matrix.simplified_msc3575": True,
}


@routes.get("/_matrix/client/versions", auth=Auth.NONE, prefixes=())
async def getVersions(req: ApiRequest) -> dict[str, Any]:
    # Signing in a new device from an existing one (MSC3882, POST /login/get_token): served when
    # login_via_existing_session is enabled.
    msc3882 = req.services.config.login_via_existing_session.enabled
    return {
        "versions": SUPPORTED_VERSIONS,
        "unstable_features": {**UNSTABLE_FEATURES, "org.matrix.msc3882": msc3882},
    }


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
                "available": {v: rv.disposition for v, rv in KNOWN_ROOM_VERSIONS.items()},
            },
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": config.login_via_existing_session.enabled},
        }
    }


@routes.get("/.well-known/matrix/server", auth=Auth.NONE, prefixes=())
async def getServerWellknown(req: ApiRequest) -> dict[str, Any]:
    """Federation delegation, as Synapse: with `serve_server_wellknown`, point other servers at
    public_baseurl's host on its port, or 443 (a reverse proxy forwards it to the federation
    listener)."""
    config = req.services.config
    if not config.serve_server_wellknown:
        raise not_found(".well-known not available")
    parts = urlsplit(config.public_baseurl)
    host = parts.hostname or config.server_name
    host = f"[{host}]" if ":" in host else host
    return {"m.server": f"{host}:{parts.port or 443}"}
