"""Cross-signing keys and signatures (cross_signing.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.http.routing import CLIENT_UNSTABLE, CLIENT_V3_R0, ApiRequest, Router

from .uia_stages import require_password_uia

routes = Router()

PREFIXES = CLIENT_V3_R0 + CLIENT_UNSTABLE


@routes.post("/keys/device_signing/upload", prefixes=PREFIXES)
async def uploadCrossSigningKeys(req: ApiRequest) -> Any:
    body = await req.json()
    service = req.services.e2e_keys
    needs_uia = await service.cross_signing_needs_uia(req.user, body)
    if needs_uia is None:  # the same keys again: idempotent, no UIA
        return {}
    if needs_uia:
        await require_password_uia(req, body)
    await service.upload_cross_signing_keys(req.user, body)
    return {}


@routes.post("/keys/signatures/upload", prefixes=PREFIXES)
async def uploadCrossSigningSignatures(req: ApiRequest) -> Any:
    body = await req.json()
    return await req.services.e2e_keys.upload_signatures(req.user.user_id, body)
