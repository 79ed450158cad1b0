"""SSO login (login.yaml `m.login.sso`): the redirect to the identity provider, and the OIDC
callback the provider sends the browser to (Synapse's `/_synapse/client/oidc/callback`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.services.sso import (
    SsoError,
    SsoOutcome,
    confirm_page,
    error_page,
    ui_auth_confirm_page,
    ui_auth_done_page,
    ui_auth_wrong_user_page,
)
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
    return _to_provider(req, location, cookie)


def _to_provider(req: ApiRequest, location: str, cookie: str) -> web.StreamResponse:
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
        if not isinstance(outcome, SsoOutcome):  # the end of an m.login.sso UIA stage
            page = ui_auth_done_page() if outcome.done else ui_auth_wrong_user_page(outcome.user_id)
            response = web.Response(text=page, content_type="text/html")
        elif outcome.confirm:
            response = web.Response(text=confirm_page(outcome.url), content_type="text/html")
        else:
            response = web.Response(status=302, headers={"Location": outcome.url})
    response.headers["Cache-Control"] = "no-store"
    for name in (COOKIE_NAME, COOKIE_NAME_LEGACY):  # one login per session
        response.del_cookie(name, path=_COOKIE_PATH)
    return response


@routes.get("/auth/{authType}/fallback/web", auth=Auth.NONE)
async def authFallback(req: ApiRequest) -> web.StreamResponse:
    """The UIA fallback page. Only m.login.sso has one here: a confirmation naming the operation
    (the spec's security advice), whose links redirect to one of the user's identity providers
    with a session cookie; the OIDC callback then marks the stage done."""
    if req.path["authType"] != "m.login.sso":
        raise MatrixError(404, "M_UNRECOGNIZED", "No fallback page for this authentication type")
    sso = _sso(req)
    session = req.query.get("session")
    if not session:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing session")
    user_id, operation, providers = await sso.ui_auth_choices(session)
    idp_id = req.query.get("idp_id")
    if idp_id is not None:
        location, cookie = await sso.start_ui_auth(session, user_id, idp_id)
        return _to_provider(req, location, cookie)
    links = [
        (p.config.idp_name, f"{req.raw.path}?{urlencode({'session': session, 'idp_id': p.idp_id})}")
        for p in providers
    ]
    response = web.Response(text=ui_auth_confirm_page(user_id, operation, links), content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response
