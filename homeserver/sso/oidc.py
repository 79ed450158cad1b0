"""An OpenID Connect relying party for one identity provider: discovery, the authorization URL
(state, nonce, PKCE), the code exchange, and the ID token's verification (signature from the
provider's JWKS, issuer, audience, expiry, nonce) or the userinfo endpoint.

Every request to the provider goes through the SSRF-guarded outbound client, like every other
outbound fetch: an identity provider on a private network must be allowed in
`ip_range_whitelist`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from typing import Any
from urllib.parse import quote_plus, urlencode

import jwt

from homeserver.config.oidc import OidcProviderConfig
from homeserver.core import json as hjson
from homeserver.http.outbound import OutboundClient, OutboundError

logger = logging.getLogger(__name__)

MAX_RESPONSE = 1024 * 1024
# Asymmetric algorithms use the provider's JWKS; HS* the client secret (as the spec allows).
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
     "HS256", "HS384", "HS512"}
)  # fmt: skip
CLOCK_SKEW_S = 120


class OidcError(Exception):
    """The provider's answer cannot be used; `reason` is safe to show the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class OidcProvider:
    def __init__(self, config: OidcProviderConfig, http: OutboundClient) -> None:
        self.config = config
        self.http = http
        self._metadata: dict[str, Any] | None = None
        self._jwks: dict[str, Any] | None = None

    @property
    def idp_id(self) -> str:
        return self.config.idp_id

    # -- metadata --------------------------------------------------------------------------------

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            cfg = self.config
            found: dict[str, Any] = {}
            if cfg.discover:
                url = cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
                found = await self._get_json(url)
                # The discovered issuer is the one ID tokens carry (as in Synapse); it must be
                # the configured one, give or take the trailing slash operators often add
                # (Synapse's Google example says "https://accounts.google.com/").
                discovered = found.get("issuer")
                if not isinstance(discovered, str) or discovered.rstrip("/") != cfg.issuer.rstrip("/"):
                    raise OidcError(f"the provider's issuer is {discovered!r}, not {cfg.issuer!r}")
            else:
                found["issuer"] = cfg.issuer
            for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
                configured = getattr(cfg, key)
                if configured:
                    found[key] = configured
            for key in ("authorization_endpoint", "token_endpoint"):
                self._check_endpoint(key, found.get(key))
            self._metadata = found
        return self._metadata

    def _check_endpoint(self, name: str, url: Any) -> None:
        if not isinstance(url, str) or not url:
            raise OidcError(f"the provider has no {name}")
        if not url.startswith("https://") and not self.config.skip_verification:
            raise OidcError(f"the provider's {name} is not https (set skip_verification for tests only)")

    def uses_pkce(self, metadata: dict[str, Any]) -> bool:
        method = self.config.pkce_method
        if method == "auto":
            return "S256" in (metadata.get("code_challenge_methods_supported") or [])
        return method == "always"

    # -- the redirect ----------------------------------------------------------------------------

    async def authorization_url(
        self, redirect_uri: str, state: str, nonce: str, code_challenge: str | None
    ) -> str:
        metadata = await self.metadata()
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
        }
        if code_challenge is not None:
            params.update(code_challenge=code_challenge, code_challenge_method="S256")
        endpoint = metadata["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"

    # -- the callback ----------------------------------------------------------------------------

    async def claims_for_code(
        self, code: str, redirect_uri: str, nonce: str, code_verifier: str | None
    ) -> dict[str, Any]:
        """Exchange the code and return the user's claims (ID token or userinfo)."""
        token = await self._exchange(code, redirect_uri, code_verifier)
        if not self.config.uses_userinfo:
            id_token = token.get("id_token")
            if not isinstance(id_token, str):
                raise OidcError("the provider returned no id_token")
            return await self._verify_id_token(id_token, nonce)
        access_token = token.get("access_token")
        if not isinstance(access_token, str):
            raise OidcError("the provider returned no access_token")
        metadata = await self.metadata()
        self._check_endpoint("userinfo_endpoint", metadata.get("userinfo_endpoint"))
        if isinstance(token.get("id_token"), str):  # still check it when there is one
            await self._verify_id_token(token["id_token"], nonce)
        return await self._get_json(
            metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"}
        )

    async def _exchange(self, code: str, redirect_uri: str, code_verifier: str | None) -> dict[str, Any]:
        cfg = self.config
        metadata = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        headers = {"Accept": "application/json"}
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        if cfg.client_auth_method == "client_secret_basic":
            raw = f"{_form_quote(cfg.client_id)}:{_form_quote(cfg.client_secret or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
        else:
            form["client_id"] = cfg.client_id
            if cfg.client_auth_method == "client_secret_post":
                form["client_secret"] = cfg.client_secret or ""
        try:
            result = await self.http.post_form(
                metadata["token_endpoint"], form, max_size=MAX_RESPONSE, headers=headers
            )
        except OutboundError as exc:
            raise OidcError(f"the token endpoint could not be reached: {exc}") from exc
        body = _json_object(result.body)
        if result.status != 200:
            error = body.get("error_description") or body.get("error") or f"HTTP {result.status}"
            raise OidcError(f"the provider refused the code: {error}")
        return body

    async def _verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        cfg = self.config
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise OidcError("the id_token is malformed") from exc
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise OidcError(f"the id_token uses an unsupported algorithm {algorithm!r}")
        if algorithm.startswith("HS"):
            key: Any = (cfg.client_secret or "").encode()
        else:
            key = await self._signing_key(header.get("kid"))
        metadata = await self.metadata()
        try:
            claims = jwt.decode(
                id_token,
                key=key,
                algorithms=[algorithm],
                audience=cfg.client_id,
                issuer=metadata["issuer"],
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"the id_token is not valid: {exc}") from exc
        if claims.get("nonce") != nonce:
            raise OidcError("the id_token's nonce does not match this login")
        return dict(claims)

    async def _signing_key(self, kid: str | None) -> Any:
        for force in (False, True):  # refetch once: the provider may have rotated its keys
            jwks = await self._load_jwks(force)
            try:
                keyset = jwt.PyJWKSet.from_dict(jwks)
            except jwt.PyJWTError as exc:
                raise OidcError("the provider's JWKS cannot be read") from exc
            keys = [k for k in keyset.keys if kid is None or k.key_id == kid]
            if len(keys) == 1 or (keys and kid is not None):
                return keys[0].key
        raise OidcError("no key in the provider's JWKS matches the id_token")

    async def _load_jwks(self, force: bool) -> dict[str, Any]:
        if self._jwks is None or force:
            metadata = await self.metadata()
            uri = metadata.get("jwks_uri")
            if not isinstance(uri, str):
                raise OidcError("the provider has no jwks_uri")
            self._jwks = await self._get_json(uri)
        return self._jwks

    async def _get_json(self, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            result = await self.http.get(url, max_size=MAX_RESPONSE, headers=headers)
        except OutboundError as exc:
            raise OidcError(f"the provider could not be reached ({url}): {exc}") from exc
        if result.status != 200:
            raise OidcError(f"the provider answered HTTP {result.status} for {url}")
        return _json_object(result.body)


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = hjson.loads(data)
    except ValueError as exc:
        raise OidcError("the provider's answer is not JSON") from exc
    if not isinstance(value, dict):
        raise OidcError("the provider's answer is not a JSON object")
    return value


def _form_quote(value: str) -> str:
    # RFC 6749 2.3.1: client id and secret are form-encoded before going into Basic auth.
    return quote_plus(value)
