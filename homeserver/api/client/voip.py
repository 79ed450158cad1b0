"""TURN server credentials (voip.yaml).

Config keys as Synapse's: `turn_uris`, `turn_shared_secret` (time-limited HMAC credentials, the
TURN REST API scheme coturn's `use-auth-secret` uses) or `turn_username`/`turn_password`, and
`turn_user_lifetime` (a duration, default one hour). Without `turn_uris` the answer is `200 {}`, as Synapse
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


@routes.get("/voip/turnServer")
async def getTurnServer(req: ApiRequest) -> Any:
    turn = req.services.config.turn
    if not turn.uris:
        return {}
    lifetime_ms = turn.user_lifetime
    secret = turn.shared_secret
    if secret:
        expiry = int(time.time()) + lifetime_ms // 1000
        username = f"{expiry}:{req.user.user_id}"
        mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
        password = base64.b64encode(mac).decode("ascii")
    else:
        username = turn.username or ""
        password = turn.password or ""
    return {"username": username, "password": password, "uris": list(turn.uris), "ttl": lifetime_ms // 1000}
