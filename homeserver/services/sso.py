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

from homeserver.config.oidc import SsoConfig
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.services.accounts import AccountService
from homeserver.services.login_tokens import LoginTokens
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
        self.public_baseurl = public_baseurl
        self.callback_url = public_baseurl.rstrip("/") + CALLBACK_PATH
        # States already used (a replayed callback with a copied cookie); kept for the cookie's
        # lifetime at most, bounded.
        self._used_states: dict[str, int] = {}

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

    async def start(self, idp_id: str | None, client_redirect_url: str) -> tuple[str, str]:
        """(the provider's authorization URL, the session cookie's value)."""
        if idp_id is None:
            if len(self.providers) != 1:
                raise MatrixError(400, "M_MISSING_PARAM", "Several identity providers: name one in the path")
            provider = next(iter(self.providers.values()))
        else:
            found = self.providers.get(idp_id)
            if found is None:
                raise MatrixError(404, "M_NOT_FOUND", "Unknown identity provider")
            provider = found
        _check_client_url(client_redirect_url)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        try:
            metadata = await provider.metadata()
        except OidcError as exc:
            logger.warning("SSO provider %s unavailable: %s", provider.idp_id, exc.reason)
            raise MatrixError(502, "M_UNKNOWN", "The identity provider cannot be reached") from exc
        verifier, challenge = pkce_pair() if provider.uses_pkce(metadata) else (None, None)
        url = await provider.authorization_url(self.callback_url, state, nonce, challenge)
        cookie = self.signer.sign(
            {"idp": provider.idp_id, "state": state, "nonce": nonce, "verifier": verifier,
             "redirect": client_redirect_url}
        )  # fmt: skip
        return url, cookie

    # -- steps 2 and 3 ---------------------------------------------------------------------------

    async def callback(self, query: Mapping[str, str], cookie: str | None) -> SsoOutcome:
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
        self._claim_state(state, int(session["exp"]))
        provider = self.providers.get(str(session.get("idp")))
        if provider is None:
            raise SsoError(400, "This login started with an identity provider that is gone")
        try:
            claims = await provider.claims_for_code(
                code, self.callback_url, str(session["nonce"]), session.get("verifier")
            )
            attributes = map_claims(provider.config.mapping, claims)
        except (OidcError, MappingError) as exc:
            reason = exc.reason if isinstance(exc, OidcError) else str(exc)
            logger.warning("SSO login with %s failed: %s", provider.idp_id, reason)
            raise SsoError(502 if isinstance(exc, OidcError) else 500, f"Login failed: {reason}") from exc
        user_id = await self._user_for(provider, attributes)
        token = await self.login_tokens.issue(user_id, auth_provider_id=provider.idp_id)
        client_url = str(session["redirect"])
        return SsoOutcome(
            _with_param(client_url, "loginToken", token), not self._trusted(client_url), user_id
        )

    def _claim_state(self, state: str, expires: int) -> None:
        now = self.clock.time_ms()
        if len(self._used_states) > 10_000:
            self._used_states = {s: e for s, e in self._used_states.items() if e > now}
        if state in self._used_states:
            raise SsoError(400, "This login was already completed; start again")
        self._used_states[state] = expires

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
            return owner
        if attributes.localpart is None:
            raise SsoError(
                500, "The server maps no user name for this provider (localpart_template); tell an admin"
            )
        try:
            localpart = self.accounts.check_new_localpart(attributes.localpart)
        except MatrixError as err:
            raise SsoError(
                400, f"The identity provider's user name cannot be used here: {err.error}"
            ) from err
        user_id = self.accounts.user_id_for(localpart)
        existing = await self.accounts.users.get_user(user_id)
        if existing is not None:
            if not provider.config.allow_existing_users:
                raise SsoError(409, f"The user name {localpart} is already taken on this server")
            if existing.deactivated:
                raise SsoError(403, "This account has been deactivated")
            async with self.accounts.db.transaction() as conn:
                await self.admin_users.add_external_id_txn(conn, idp, attributes.remote_user_id, user_id)
            logger.info("linked %s to %s subject %s", user_id, idp, attributes.remote_user_id)
            return user_id

        async def link(conn: Connection) -> None:
            await self.admin_users.add_external_id_txn(conn, idp, attributes.remote_user_id, user_id)
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
        except MatrixError as err:
            raise SsoError(409 if err.errcode == "M_USER_IN_USE" else err.status, err.error) from err
        logger.info("created %s on first login with %s", user_id, idp)
        return user_id


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


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width"><title>{title}</title></head><body><h1>{title}</h1>{body}'
        "</body></html>"
    )
