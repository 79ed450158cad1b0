"""Single sign-on: from "Sign in with Keycloak" in the client to a login token, as Synapse does.

1. `GET /login/sso/redirect[/{idpId}]?redirectUrl=...`: a signed session cookie (state, nonce,
   PKCE verifier, the client's URL; `sso/session.py`) and a redirect to the identity provider.
2. The provider sends the browser to `/_synapse/client/oidc/callback?code&state`: the state must
   match the cookie's; the code is exchanged, the ID token verified (`sso/oidc.py`), the claims
   mapped to a user (`sso/mapping.py`): the user already linked to (idp, subject), else a new
   account from the templates (an existing account of that name only with
   `allow_existing_users`).
3. The browser goes back to the client's URL with `loginToken`, which the client exchanges with
   `POST /login {type: m.login.token}` (`services/login_tokens.py`). Client URLs outside
   `sso.client_whitelist` get a confirmation page first, so a crafted link cannot send a login
   token to someone else's site without the user seeing where it goes.
"""

from __future__ import annotations

import html
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from homeserver.config.oidc import AttributeRequirement, SsoConfig
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.services.accounts import AccountService
from homeserver.services.login_tokens import LoginTokens
from homeserver.services.profiles import ProfileService
from homeserver.services.uia import UiaService
from homeserver.sso.mapping import MappingError, UserAttributes, map_claims
from homeserver.sso.oidc import OidcError, OidcProvider, pkce_pair
from homeserver.sso.session import SessionSigner
from homeserver.storage.database import Connection
from homeserver.storage.stores.admin_users import AdminUserStore

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/_synapse/client/oidc/callback"


class SsoError(Exception):
    """A failed SSO login, shown to the user as a page (the browser is not a Matrix client)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _LinkedMeanwhile(Exception):
    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


@dataclass(frozen=True, slots=True)
class UiaOutcome:
    """The end of an m.login.sso UIA stage: confirmed for `user_id`, or signed in as someone else."""

    user_id: str
    done: bool


@dataclass(frozen=True, slots=True)
class SsoOutcome:
    """Where the browser goes after the callback: straight to `url`, or through a confirmation
    page when the client's URL is not whitelisted."""

    url: str
    confirm: bool
    user_id: str


class SsoService:
    def __init__(
        self,
        providers: list[OidcProvider],
        config: SsoConfig,
        accounts: AccountService,
        admin_users: AdminUserStore,
        login_tokens: LoginTokens,
        signer: SessionSigner,
        clock: Clock,
        uia: UiaService,
        profiles: ProfileService,
        *,
        public_baseurl: str,
    ) -> None:
        self.providers = {p.idp_id: p for p in providers}
        self.config = config
        self.accounts = accounts
        self.admin_users = admin_users
        self.login_tokens = login_tokens
        self.signer = signer
        self.clock = clock
        self.uia = uia
        self.profiles = profiles
        self.public_baseurl = public_baseurl
        self.callback_url = public_baseurl.rstrip("/") + CALLBACK_PATH

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

    def identity_providers(self) -> list[dict[str, Any]]:
        """`identity_providers` of the `m.login.sso` flow in GET /login."""
        out = []
        for provider in self.providers.values():
            cfg = provider.config
            entry: dict[str, Any] = {"id": cfg.idp_id, "name": cfg.idp_name}
            if cfg.idp_icon:
                entry["icon"] = cfg.idp_icon
            if cfg.idp_brand:
                entry["brand"] = cfg.idp_brand
            out.append(entry)
        return out

    # -- step 1 ----------------------------------------------------------------------------------

    def _provider(self, idp_id: str | None) -> OidcProvider:
        if idp_id is None:
            if len(self.providers) != 1:
                raise MatrixError(400, "M_MISSING_PARAM", "Several identity providers: name one in the path")
            return next(iter(self.providers.values()))
        found = self.providers.get(idp_id)
        if found is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown identity provider")
        return found

    async def start(self, idp_id: str | None, client_redirect_url: str) -> tuple[str, str]:
        """(the provider's authorization URL, the session cookie's value)."""
        provider = self._provider(idp_id)
        _check_client_url(client_redirect_url)
        return await self._authorize(provider, {"redirect": client_redirect_url})

    async def _authorize(self, provider: OidcProvider, extra: dict[str, Any]) -> tuple[str, str]:
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        try:
            metadata = await provider.metadata()
        except OidcError as exc:
            logger.warning("SSO provider %s unavailable: %s", provider.idp_id, exc.reason)
            raise MatrixError(502, "M_UNKNOWN", "The identity provider cannot be reached") from exc
        verifier, challenge = pkce_pair() if provider.uses_pkce(metadata) else (None, None)
        url = await provider.authorization_url(self.callback_url, state, nonce, challenge)
        cookie = self.signer.sign(
            {"idp": provider.idp_id, "state": state, "nonce": nonce, "verifier": verifier, **extra}
        )
        return url, cookie

    # -- user-interactive auth (m.login.sso) -----------------------------------------------------

    async def providers_for_user(self, user_id: str) -> list[OidcProvider]:
        """The configured providers this user has signed in with: the ones that can confirm it is
        them in user-interactive auth (Synapse offers m.login.sso to exactly these users)."""
        if not self.providers:
            return []
        linked = {idp for idp, _ in await self.admin_users.list_external_ids(user_id)}
        return [p for idp, p in self.providers.items() if idp in linked]

    async def ui_auth_choices(self, ui_auth_session: str) -> tuple[str, str, list[OidcProvider]]:
        """For the m.login.sso fallback page: (user, what the client is asking to do, the user's
        providers)."""
        session = await self.uia.session(ui_auth_session)
        if session is None:
            raise MatrixError(400, "M_UNKNOWN", "Unknown or expired UIA session")
        if session.user_id is None:
            raise MatrixError(400, "M_UNKNOWN", "This session is not one of a signed-in user")
        providers = await self.providers_for_user(session.user_id)
        if not providers:
            raise MatrixError(400, "M_UNKNOWN", "This account has not signed in with single sign-on")
        return session.user_id, describe_operation(session.method, session.uri), providers

    async def start_ui_auth(self, ui_auth_session: str, user_id: str, idp_id: str) -> tuple[str, str]:
        """The redirect of the m.login.sso fallback page: to one of the user's own providers."""
        provider = self.providers.get(idp_id)
        if provider is None or provider not in await self.providers_for_user(user_id):
            raise MatrixError(404, "M_NOT_FOUND", "Unknown identity provider for this account")
        return await self._authorize(provider, {"ui_auth": ui_auth_session})

    # -- steps 2 and 3 ---------------------------------------------------------------------------

    async def callback(self, query: Mapping[str, str], cookie: str | None) -> SsoOutcome | UiaOutcome:
        if "error" in query:
            description = query.get("error_description") or query["error"]
            raise SsoError(400, f"The identity provider refused the login: {description}")
        if cookie is None:
            raise SsoError(400, "This login has no session (cookies blocked, or it was started elsewhere)")
        session = self.signer.verify(cookie)
        if session is None:
            raise SsoError(400, "This login session is invalid or has expired; start again")
        state, code = query.get("state"), query.get("code")
        if not state or not secrets.compare_digest(state, str(session.get("state"))):
            raise SsoError(400, "The login's state does not match this browser's session")
        if not code:
            raise SsoError(400, "The identity provider sent no code")
        if not await self.login_tokens.claim_sso_state(state, int(session["exp"])):
            raise SsoError(400, "This login was already completed; start again")
        provider = self.providers.get(str(session.get("idp")))
        if provider is None:
            raise SsoError(400, "This login started with an identity provider that is gone")
        try:
            claims = await provider.claims_for_code(
                code, self.callback_url, str(session["nonce"]), session.get("verifier")
            )
            if not meets_requirements(claims, provider.config.attribute_requirements):
                raise SsoError(403, "You are not authorised to log in here.")
            attributes = map_claims(provider.config.mapping, claims)
        except (OidcError, MappingError) as exc:
            reason = exc.reason if isinstance(exc, OidcError) else str(exc)
            logger.warning("SSO login with %s failed: %s", provider.idp_id, reason)
            raise SsoError(502 if isinstance(exc, OidcError) else 500, f"Login failed: {reason}") from exc
        if "ui_auth" in session:
            return await self._finish_ui_auth(str(session["ui_auth"]), provider, attributes)
        user_id = await self._user_for(provider, attributes)
        token = await self.login_tokens.issue(user_id, auth_provider_id=provider.idp_id)
        client_url = str(session["redirect"])
        return SsoOutcome(
            _with_param(client_url, "loginToken", token), not self._trusted(client_url), user_id
        )

    async def _finish_ui_auth(
        self, ui_auth_session: str, provider: OidcProvider, attributes: UserAttributes
    ) -> UiaOutcome:
        """Mark the m.login.sso stage done if the provider's user is the session's user; never
        creates or links an account (as Synapse's complete_sso_ui_auth_request)."""
        session = await self.uia.session(ui_auth_session)
        if session is None or session.user_id is None:
            raise SsoError(400, "This confirmation has expired; start the action again")
        owner = await self.admin_users.external_id_owner(provider.idp_id, attributes.remote_user_id)
        if owner != session.user_id:
            logger.warning(
                "SSO UIA for %s answered by %s subject %s (owner %s)",
                session.user_id, provider.idp_id, attributes.remote_user_id, owner,
            )  # fmt: skip
            # As Synapse: the stage is recorded as proving nobody, so the request fails (403).
            await self.uia.complete_stage(ui_auth_session, "m.login.sso", "")
            return UiaOutcome(session.user_id, done=False)
        await self.uia.complete_stage(ui_auth_session, "m.login.sso", owner)
        return UiaOutcome(owner, done=True)

    def _trusted(self, url: str) -> bool:
        return url.startswith(self.public_baseurl) or any(
            url.startswith(p) for p in self.config.client_whitelist
        )

    async def _user_for(self, provider: OidcProvider, attributes: UserAttributes) -> str:
        idp = provider.idp_id
        owner = await self.admin_users.external_id_owner(idp, attributes.remote_user_id)
        if owner is not None:
            user = await self.accounts.users.get_user(owner)
            if user is None or user.deactivated:
                raise SsoError(403, "This account has been deactivated")
            if self.config.update_profile_information and attributes.display_name:
                profile = await self.profiles.get_profile(owner)
                if profile.displayname != attributes.display_name:
                    await self.profiles.set_displayname(owner, attributes.display_name)
            return owner
        if attributes.localpart is None:
            raise SsoError(
                500, "The server maps no user name for this provider (localpart_template); tell an admin"
            )
        if provider.config.allow_existing_users:
            existing = await self._existing_user(attributes.localpart)
            if existing is not None:
                async with self.accounts.db.transaction() as conn:
                    owner = await self.admin_users.link_external_id_txn(
                        conn, idp, attributes.remote_user_id, existing
                    )
                logger.info("linked %s to %s subject %s", owner, idp, attributes.remote_user_id)
                return owner
        if not provider.config.enable_registration:
            raise SsoError(403, "User does not exist and registrations are disabled")
        try:
            localpart = self.accounts.check_new_localpart(attributes.localpart)
        except MatrixError as err:
            raise SsoError(
                400, f"The identity provider's user name cannot be used here: {err.error}"
            ) from err
        user_id = self.accounts.user_id_for(localpart)
        if await self.accounts.users.get_user_case_insensitive(user_id):
            # The same person's concurrent first login (two tabs) may have just created it.
            owner = await self.admin_users.external_id_owner(idp, attributes.remote_user_id)
            if owner is not None:
                return owner
            # Never signed into: that would give the account to whoever has the provider account
            # of that name. (Synapse would quietly create "alice1" instead; we refuse, so the
            # admin decides: allow_existing_users, or a localpart_template that is unique.)
            raise SsoError(
                409,
                f"The user name {localpart} is already taken on this server; ask an administrator "
                "to link your account",
            )

        async def link(conn: Connection) -> None:
            owner = await self.admin_users.link_external_id_txn(conn, idp, attributes.remote_user_id, user_id)
            if owner != user_id:
                raise _LinkedMeanwhile(owner)  # rolls the new account back
            emails = []
            for address in attributes.emails:
                if await self.admin_users.threepid_owner_txn(conn, "email", address) is None:
                    emails.append(("email", address))
            if emails:
                await self.admin_users.replace_threepids_txn(conn, user_id, emails, self.clock.time_ms())

        try:
            await self.accounts.register(
                localpart, None, displayname=attributes.display_name, inhibit_login=True, in_transaction=link
            )
        except _LinkedMeanwhile as race:
            # The same person's concurrent first login (two tabs) created the account first.
            return race.owner
        except MatrixError as err:
            if err.errcode == "M_USER_IN_USE":
                # Most likely that same race, lost on the user name rather than the link.
                owner = await self.admin_users.external_id_owner(idp, attributes.remote_user_id)
                if owner is not None:
                    return owner
            raise SsoError(409 if err.errcode == "M_USER_IN_USE" else err.status, err.error) from err
        logger.info("created %s on first login with %s", user_id, idp)
        return user_id

    async def _existing_user(self, localpart: str) -> str | None:
        """allow_existing_users: the account of that name, matched case-insensitively as Synapse
        does (and refusing to guess between several that differ only in case)."""
        user_id = self.accounts.user_id_for(localpart)
        found = [u for u in await self.accounts.users.get_user_case_insensitive(user_id)]
        if not found:
            return None
        exact = [u for u in found if u.user_id == user_id]
        user = found[0] if len(found) == 1 else exact[0] if exact else None
        if user is None:
            raise SsoError(409, f"{user_id} matches several accounts that differ only in case")
        if user.deactivated:
            raise SsoError(403, "This account has been deactivated")
        return user.user_id


def meets_requirements(claims: Mapping[str, Any], requirements: tuple[AttributeRequirement, ...]) -> bool:
    """Synapse's `attribute_requirements`: every one must hold; a claim that is not a list counts
    as a list of itself."""
    for req in requirements:
        if req.attribute not in claims:
            return False
        if req.value is None and req.one_of is None:
            continue
        raw = claims[req.attribute]
        values = raw if isinstance(raw, list) else [raw]
        wanted = ([req.value] if req.value is not None else []) + list(req.one_of or ())
        if not any(v in values for v in wanted):
            return False
    return True


_OPERATIONS = (
    ("/devices", "remove devices from your account"),
    ("/delete_devices", "remove devices from your account"),
    ("/account/password", "change your password"),
    ("/account/deactivate", "deactivate your account"),
    ("/keys/device_signing/upload", "add cross-signing keys to your account"),
    ("/login/get_token", "sign in another device to your account"),
    ("/account/3pid", "change the email addresses or phone numbers of your account"),
)


def describe_operation(method: str, uri: str) -> str:
    """What the client asked to do, for the confirmation page (the spec's "A client is trying
    to remove a device from your account")."""
    for marker, text in _OPERATIONS:
        if marker in uri:
            return text
    return "make a change to your account"


def _check_client_url(url: str) -> None:
    """An absolute URL; apps may use their own scheme (io.element.app:/callback)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme or scheme in ("javascript", "data", "vbscript", "file"):
        raise MatrixError(400, "M_INVALID_PARAM", "redirectUrl must be an absolute URL")
    if scheme in ("http", "https") and not parts.netloc:
        raise MatrixError(400, "M_INVALID_PARAM", "redirectUrl must be an absolute URL")


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def error_page(message: str) -> str:
    return _page("Sign-in failed", f"<p>{html.escape(message)}</p>")


def confirm_page(url: str) -> str:
    host = urlsplit(url).netloc or urlsplit(url).scheme
    return _page(
        "Continue signing in?",
        f"<p>You are signing in to <strong>{html.escape(host)}</strong>. Continue only if you "
        f'started this sign-in there.</p><p><a href="{html.escape(url, quote=True)}">Continue to '
        f"{html.escape(host)}</a></p>",
    )


def ui_auth_confirm_page(user_id: str, operation: str, links: list[tuple[str, str]]) -> str:
    buttons = "".join(
        f'<p><a href="{html.escape(url, quote=True)}">Continue with {html.escape(name)}</a></p>'
        for name, url in links
    )
    return _page(
        "Confirm it's you",
        f"<p>A client is trying to {html.escape(operation)} ({html.escape(user_id)}). To confirm "
        "this action, re-authenticate with single sign-on. If you did not expect this, your "
        f"account may be compromised!</p>{buttons}",
    )


# The spec's fallback completion script: tells the client (embedded view or opener) it is done.
_AUTH_DONE_SCRIPT = (
    "<script>if (window.onAuthDone) { window.onAuthDone(); } else if (window.opener && "
    'window.opener.postMessage) { window.opener.postMessage("authDone", "*"); }</script>'
)


def ui_auth_done_page() -> str:
    return _page(
        "Thank you",
        "<p>Now we know it's you, you can close this window and return to the application.</p>",
        head=_AUTH_DONE_SCRIPT,
    )


def ui_auth_wrong_user_page(user_id: str) -> str:
    return _page(
        "That was not your account",
        f"<p>You signed in with an account that is not {html.escape(user_id)}. Start the action "
        "again in the application and sign in with the right account.</p>",
    )


def _page(title: str, body: str, head: str = "") -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width"><title>{title}</title>{head}</head><body><h1>{title}</h1>{body}'
        "</body></html>"
    )
