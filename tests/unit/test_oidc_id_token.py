"""ID token verification (homeserver/sso/oidc.py) with tokens signed here: what a provider that
misbehaves, or an attacker replaying another login's token, would send. The provider's metadata
and JWKS are set directly; no network."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from homeserver.config.oidc import OidcMapping, OidcProviderConfig
from homeserver.sso.oidc import OidcError, OidcProvider

ISSUER = "https://idp.example"
CLIENT_ID = "matrix"
SECRET = "client-secret-that-is-long-enough-for-hs256"
NONCE = "nonce-1"


def _config() -> OidcProviderConfig:
    return OidcProviderConfig(
        idp_id="oidc-test", idp_name="Test", idp_icon=None, idp_brand=None, issuer=ISSUER,
        client_id=CLIENT_ID, client_secret=SECRET, client_auth_method="client_secret_basic",
        scopes=("openid",), discover=False, authorization_endpoint=f"{ISSUER}/auth",
        token_endpoint=f"{ISSUER}/token", userinfo_endpoint=None, jwks_uri=f"{ISSUER}/jwks",
        skip_verification=False, user_profile_method="auto", allow_existing_users=False,
        pkce_method="auto", mapping=OidcMapping(),
    )  # fmt: skip


KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


@pytest.fixture
def provider() -> OidcProvider:
    p = OidcProvider(_config(), http=None)  # type: ignore[arg-type]  # never reached: all is set
    p._metadata = {"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                   "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks"}  # fmt: skip
    p._jwks = {"keys": [_jwk(KEY, "k1")]}

    async def no_refetch(force: bool) -> dict[str, Any]:
        assert p._jwks is not None
        return p._jwks

    p._load_jwks = no_refetch  # type: ignore[method-assign]
    return p


def _token(key: Any = KEY, kid: str | None = "k1", alg: str = "RS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "user-1", "iat": now, "exp": now + 300, "nonce": NONCE}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


async def test_a_good_token_is_accepted(provider: OidcProvider) -> None:
    claims = await provider._verify_id_token(_token(name="김민준"), NONCE)
    assert claims["sub"] == "user-1" and claims["name"] == "김민준"


@pytest.mark.parametrize(
    ("token_args", "message"),
    [
        ({"nonce": "another-login"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"aud": "someone-else"}, "not valid"),
        ({"iss": "https://evil.example"}, "not valid"),
        ({"exp": int(time.time()) - 3600}, "not valid"),
        ({"sub": None}, "not valid"),
        ({"key": OTHER_KEY}, "not valid"),  # signed by a key the provider does not publish
        ({"key": OTHER_KEY, "kid": "unknown"}, "no key"),
    ],
)
async def test_bad_tokens_are_refused(
    provider: OidcProvider, token_args: dict[str, Any], message: str
) -> None:
    with pytest.raises(OidcError, match=message):
        await provider._verify_id_token(_token(**token_args), NONCE)


async def test_unsigned_and_malformed_tokens_are_refused(provider: OidcProvider) -> None:
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": CLIENT_ID, "sub": "x", "nonce": NONCE}, None, algorithm="none"
    )
    with pytest.raises(OidcError, match="unsupported algorithm"):
        await provider._verify_id_token(unsigned, NONCE)
    with pytest.raises(OidcError, match="malformed"):
        await provider._verify_id_token("not-a-jwt", NONCE)


async def test_hs256_uses_the_client_secret(provider: OidcProvider) -> None:
    good = _token(key=SECRET, alg="HS256", kid=None)
    assert (await provider._verify_id_token(good, NONCE))["sub"] == "user-1"
    forged = _token(key="guessed-secret-guessed-secret-guessed", alg="HS256", kid=None)
    with pytest.raises(OidcError, match="not valid"):
        await provider._verify_id_token(forged, NONCE)
