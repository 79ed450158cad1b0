"""TURN server credentials (voip.yaml).

Config keys as Synapse's: `turn_uris`, `turn_shared_secret` (time-limited HMAC credentials, the
TURN REST API scheme coturn's `use-auth-secret` uses) or `turn_username`/`turn_password`, and
`turn_user_lifetime` (ms, default one hour). Without `turn_uris` the answer is `200 {}`, as Synapse
gives: the spec's schema lists the fields as required but has no "not configured" answer, and
clients (matrix-js-sdk: "if (res.uris)") treat `{}` as "no TURN server" without retrying, while an
empty `uris` list would make browsers reject the ICE configuration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from homeserver.http.routing import ApiRequest, Router

routes = Router()

DEFAULT_LIFETIME_MS = 3600 * 1000


@routes.get("/voip/turnServer")
async def getTurnServer(req: ApiRequest) -> Any:
    extras = getattr(req.services.config, "extras", {}) or {}
    uris = extras.get("turn_uris") or []
    if not uris:
        return {}
    lifetime_ms = int(extras.get("turn_user_lifetime") or DEFAULT_LIFETIME_MS)
    secret = extras.get("turn_shared_secret")
    if secret:
        expiry = int(time.time()) + lifetime_ms // 1000
        username = f"{expiry}:{req.user.user_id}"
        mac = hmac.new(str(secret).encode(), username.encode(), hashlib.sha1).digest()
        password = base64.b64encode(mac).decode("ascii")
    else:
        username = str(extras.get("turn_username") or "")
        password = str(extras.get("turn_password") or "")
    return {"username": username, "password": password, "uris": list(uris), "ttl": lifetime_ms // 1000}
