"""Account registration (registration.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.appservice.registry import (
    ApplicationService,
    check_appservice_may_register,
    check_user_id_not_exclusive,
)
from homeserver.core.errors import MatrixError
from homeserver.http.auth import extract_access_token
from homeserver.http.params import get_bool, get_str
from homeserver.http.routing import ApiRequest, Auth, JsonResponse, Router
from homeserver.services.accounts import LoginResult
from homeserver.services.uia import StageChecker

routes = Router()


def _registration_flows(req: ApiRequest) -> list[list[str]]:
    config = req.services.config
    if config.registration_requires_token:
        return [["m.login.registration_token"]]
    return [["m.login.dummy"]]


def _checkers(req: ApiRequest) -> dict[str, StageChecker]:
    async def dummy(auth: dict[str, Any], _user: str | None) -> bool:
        return True

    return {
        "m.login.dummy": dummy,
        "m.login.registration_token": req.services.registration_tokens.check_stage,
    }


def _login_body(result: LoginResult, server_name: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": result.user_id,
        "access_token": result.access_token,
        "device_id": result.device_id,
        "home_server": server_name,
    }
    if result.refresh_token is not None:
        body["refresh_token"] = result.refresh_token
        body["expires_in_ms"] = result.expires_in_ms
    return body


APPSERVICE_LOGIN_TYPE = "m.login.application_service"


async def _register_appservice_user(req: ApiRequest, service: ApplicationService, body: Any) -> Any:
    """`type: m.login.application_service`: a user inside the appservice's namespaces, no UIA,
    allowed even with registration disabled (as in Synapse)."""
    if body.get("type") != APPSERVICE_LOGIN_TYPE:
        raise MatrixError(400, "M_MISSING_PARAM", "Invalid login type: expected m.login.application_service")
    # `username` is the spec's key; very old appservices sent `user`.
    username = body.get("username", body.get("user"))
    if not isinstance(username, str) or not username:
        raise MatrixError(400, "M_MISSING_PARAM", "Desired username is missing or not a string")
    get_str(body, "device_id")
    get_str(body, "initial_device_display_name")
    accounts = req.services.accounts
    server_name = req.services.config.server_name
    localpart = username[1:].split(":", 1)[0] if username.startswith("@") else username
    user_id = accounts.user_id_for(localpart)
    if not localpart or user_id != f"@{localpart}:{server_name}" or not localpart.isprintable():
        raise MatrixError(400, "M_INVALID_USERNAME", "Invalid user id")
    check_appservice_may_register(service, user_id)
    check_user_id_not_exclusive(req.services.appservices, user_id, service)
    _, login = await accounts.register(
        localpart,
        None,
        device_id=get_str(body, "device_id"),
        initial_device_display_name=get_str(body, "initial_device_display_name"),
        inhibit_login=bool(get_bool(body, "inhibit_login", default=False)),
        want_refresh_token=bool(get_bool(body, "refresh_token", default=False)),
        # Only exclusive namespaces tie the user to the appservice (Synapse's rule).
        appservice_id=service.id if service.is_exclusive_user(user_id) else None,
        validate_localpart=False,
    )
    if login is None:
        return {"user_id": user_id, "home_server": server_name}
    return _login_body(login, server_name)


@routes.post("/register", auth=Auth.NONE, ratelimit="registration")
async def register(req: ApiRequest) -> Any:
    config = req.services.config
    accounts = req.services.accounts
    body = await req.json()
    token = extract_access_token(req.raw)
    if token is not None:
        service = req.services.appservices.get_by_token(token)
        if service is None:
            raise MatrixError(
                401,
                "M_UNKNOWN_TOKEN",
                "Unrecognised access token: only application services may pass one to /register",
            )
        return await _register_appservice_user(req, service, body)
    if body.get("type") == APPSERVICE_LOGIN_TYPE:
        raise MatrixError(
            401, "M_MISSING_TOKEN", "Appservice token must be provided when using m.login.application_service"
        )
    kind = req.query.get("kind", "user")
    if kind == "guest":
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
    if kind != "user":
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid kind")
    if not config.enable_registration:
        raise MatrixError(403, "M_FORBIDDEN", "Registration has been disabled")

    username = get_str(body, "username")
    password = get_str(body, "password")
    get_str(body, "device_id")
    get_str(body, "initial_device_display_name")
    get_bool(body, "inhibit_login")
    get_bool(body, "refresh_token")
    if username is not None:
        username = username.lower()
        accounts.check_new_localpart(username)
        check_user_id_not_exclusive(req.services.appservices, accounts.user_id_for(username))
        if not await accounts.is_available(username):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")

    result = await req.services.uia.authenticate(
        body, uri=req.raw.path, method="POST", flows=_registration_flows(req), checkers=_checkers(req)
    )
    # Later stages may omit the original parameters; the session remembers them.
    params = {**result.clientdict, **{k: v for k, v in body.items() if k != "auth"}}
    username = get_str(params, "username")
    password = get_str(params, "password")
    if password is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing password")
    localpart = username.lower() if username else await accounts.generate_localpart()
    token = result.completed.get("m.login.registration_token")
    user_id, login = await accounts.register(
        localpart,
        password,
        device_id=get_str(params, "device_id"),
        initial_device_display_name=get_str(params, "initial_device_display_name"),
        inhibit_login=bool(get_bool(params, "inhibit_login", default=False)),
        want_refresh_token=bool(get_bool(params, "refresh_token", default=False)),
        in_transaction=req.services.registration_tokens.consumer(token),
    )
    await req.services.uia.finish(result.session_id)
    if login is None:
        return {"user_id": user_id, "home_server": config.server_name}
    return _login_body(login, config.server_name)


@routes.get("/register/available", auth=Auth.NONE, ratelimit="registration")
async def checkUsernameAvailability(req: ApiRequest) -> Any:
    username = req.query.get("username")
    if not username:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing username")
    req.services.accounts.check_new_localpart(username.lower())
    check_user_id_not_exclusive(req.services.appservices, req.services.accounts.user_id_for(username.lower()))
    if not await req.services.accounts.is_available(username):
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
    return {"available": True}


@routes.get(
    "/register/m.login.registration_token/validity",
    auth=Auth.NONE,
    prefixes=("/_matrix/client/v1",),
    ratelimit="registration",
)
async def registrationTokenValidity(req: ApiRequest) -> Any:
    token = req.query.get("token")
    if not token:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing token")
    return JsonResponse({"valid": await req.services.registration_tokens.is_valid(token)})
