"""SSO login (login.yaml `m.login.sso`): the redirect to the identity provider, and the OIDC
callback the provider sends the browser to (Synapse's `/_synapse/client/oidc/callback`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.services.sso import SsoError, confirm_page, error_page
from homeserver.sso.session import COOKIE_NAME, COOKIE_NAME_LEGACY

routes = Router()

_COOKIE_PATH = "/_synapse/client/oidc"


def _sso(req: ApiRequest) -> Any:
    sso = req.services.sso
    if not sso.enabled:
        raise MatrixError(404, "M_UNRECOGNIZED", "SSO is not configured on this server")
    return sso


async def _redirect(req: ApiRequest, idp_id: str | None) -> web.StreamResponse:
    sso = _sso(req)
    client_url = req.query.get("redirectUrl")
    if not client_url:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing redirectUrl")
    location, cookie = await sso.start(idp_id, client_url)
    response = web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})
    secure = req.services.config.public_baseurl.startswith("https://")
    # Two cookies, as Synapse: SameSite=None for browsers that need it to send the cookie on the
    # provider's cross-site redirect, and one without SameSite for browsers that reject None.
    same_site = "None" if secure else "Lax"  # SameSite=None requires Secure
    response.set_cookie(
        COOKIE_NAME, cookie, path=_COOKIE_PATH, httponly=True, secure=secure, samesite=same_site
    )
    response.set_cookie(COOKIE_NAME_LEGACY, cookie, path=_COOKIE_PATH, httponly=True, secure=secure)
    return response


@routes.get("/login/sso/redirect", auth=Auth.NONE)
async def redirectToSSO(req: ApiRequest) -> web.StreamResponse:
    return await _redirect(req, None)


@routes.get("/login/sso/redirect/{idpId}", auth=Auth.NONE)
async def redirectToIdP(req: ApiRequest) -> web.StreamResponse:
    return await _redirect(req, req.path["idpId"])


@routes.get("/_synapse/client/oidc/callback", auth=Auth.NONE, prefixes=())
async def oidcCallback(req: ApiRequest) -> web.StreamResponse:
    sso = _sso(req)
    cookies = req.raw.cookies
    cookie = cookies.get(COOKIE_NAME) or cookies.get(COOKIE_NAME_LEGACY)
    try:
        outcome = await sso.callback(dict(req.query), cookie)
    except SsoError as err:
        response = web.Response(status=err.status, text=error_page(err.message), content_type="text/html")
    else:
        if outcome.confirm:
            response = web.Response(text=confirm_page(outcome.url), content_type="text/html")
        else:
            response = web.Response(status=302, headers={"Location": outcome.url})
    response.headers["Cache-Control"] = "no-store"
    for name in (COOKIE_NAME, COOKIE_NAME_LEGACY):  # one login per session
        response.del_cookie(name, path=_COOKIE_PATH)
    return response
