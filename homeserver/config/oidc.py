"""Single sign-on: Synapse's `oidc_providers` list and the `sso` section, read as Synapse reads
them so that an operator's Keycloak / Azure AD / Google block works unchanged."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section

_IDP_ID = re.compile(r"^[A-Za-z0-9._~-]{1,250}$")
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


@dataclass(frozen=True, slots=True)
class OidcMapping:
    """`user_mapping_provider.config` of Synapse's default (Jinja2) mapping provider."""

    subject_claim: str = "sub"
    localpart_template: str | None = None
    display_name_template: str | None = None
    email_template: str | None = None


@dataclass(frozen=True, slots=True)
class AttributeRequirement:
    """Synapse's `attribute_requirements` entry: the claim must be present, and (when `value` or
    `one_of` is given) have, or contain when it is a list, one of those values."""

    attribute: str
    value: str | None = None
    one_of: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class OidcProviderConfig:
    idp_id: str  # as clients see it: "oidc" or "oidc-<configured id>", as Synapse prefixes it
    idp_name: str
    idp_icon: str | None
    idp_brand: str | None
    issuer: str
    client_id: str
    client_secret: str | None
    client_auth_method: str
    scopes: tuple[str, ...]
    discover: bool
    authorization_endpoint: str | None
    token_endpoint: str | None
    userinfo_endpoint: str | None
    jwks_uri: str | None
    skip_verification: bool  # allow http:// endpoints (tests, local IdPs)
    user_profile_method: str  # "auto" (id_token when there is one) or "userinfo_endpoint"
    allow_existing_users: bool
    pkce_method: str  # "auto", "always" or "never"
    mapping: OidcMapping
    enable_registration: bool = True  # false: only accounts already linked to this provider
    attribute_requirements: tuple[AttributeRequirement, ...] = ()

    @property
    def uses_userinfo(self) -> bool:
        return self.user_profile_method == "userinfo_endpoint" or "openid" not in self.scopes


@dataclass(frozen=True, slots=True)
class SsoConfig:
    # Redirect URLs a login token may be sent to without asking the user first (prefixes).
    client_whitelist: tuple[str, ...] = ()
    # Set the display name from the provider on every login, not only the first.
    update_profile_information: bool = False


def read_oidc_providers(root: Section) -> tuple[OidcProviderConfig, ...]:
    providers = tuple(_provider(sec) for sec in root.sections("oidc_providers"))
    seen: set[str] = set()
    for provider in providers:
        if provider.idp_id in seen:
            raise ConfigError(f"two providers have the idp_id {provider.idp_id!r}", "oidc_providers")
        seen.add(provider.idp_id)
    return providers


def read_sso(root: Section) -> SsoConfig:
    sec = root.section("sso")
    return SsoConfig(
        client_whitelist=sec.get_str_list("client_whitelist"),
        update_profile_information=sec.get_bool("update_profile_information", False),
    )


def _required(sec: Section, key: str) -> str:
    value = sec.get_opt_str(key)
    if not value:
        raise ConfigError("missing", sec.key_path(key))
    return value


def _provider(sec: Section) -> OidcProviderConfig:
    raw_id = sec.get_str("idp_id", "oidc")
    if not _IDP_ID.match(raw_id):
        raise sec.error("idp_id", "letters, digits and ._~- only", raw_id)
    idp_id = raw_id if raw_id == "oidc" else f"oidc-{raw_id}"
    secret = sec.get_opt_str("client_secret")
    secret_path = sec.get_opt_str("client_secret_path")
    if secret_path is not None:
        try:
            secret = Path(secret_path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"cannot read it: {e.strerror}", sec.key_path("client_secret_path")) from e
    auth_method = sec.get_choice("client_auth_method", "client_secret_basic", CLIENT_AUTH_METHODS)
    if auth_method != "none" and not secret:
        raise ConfigError("client_secret (or client_secret_path) is needed unless client_auth_method is none",
                          sec.path)  # fmt: skip
    scopes = sec.get_str_list("scopes", ("openid",))
    discover = sec.get_bool("discover", True)
    provider = OidcProviderConfig(
        idp_id=idp_id,
        idp_name=sec.get_str("idp_name", "OIDC"),
        idp_icon=sec.get_opt_str("idp_icon"),
        idp_brand=sec.get_opt_str("idp_brand"),
        issuer=_required(sec, "issuer"),
        client_id=_required(sec, "client_id"),
        client_secret=secret,
        client_auth_method=auth_method,
        scopes=scopes,
        discover=discover,
        authorization_endpoint=sec.get_opt_str("authorization_endpoint"),
        token_endpoint=sec.get_opt_str("token_endpoint"),
        userinfo_endpoint=sec.get_opt_str("userinfo_endpoint"),
        jwks_uri=sec.get_opt_str("jwks_uri"),
        skip_verification=sec.get_bool("skip_verification", False),
        user_profile_method=sec.get_choice("user_profile_method", "auto", ("auto", "userinfo_endpoint")),
        allow_existing_users=sec.get_bool("allow_existing_users", False),
        pkce_method=sec.get_choice("pkce_method", "auto", ("auto", "always", "never")),
        mapping=_mapping(sec),
        enable_registration=sec.get_bool("enable_registration", True),
        attribute_requirements=tuple(_requirement(r) for r in sec.sections("attribute_requirements")),
    )
    if not discover:
        for key in ("authorization_endpoint", "token_endpoint"):
            if getattr(provider, key) is None:
                raise ConfigError("needed when discover is false", sec.key_path(key))
    return provider


def _requirement(sec: Section) -> AttributeRequirement:
    value = sec.raw("value")
    one_of = sec.raw("one_of")
    if value is not None and not isinstance(value, str):
        raise sec.error("value", "a string", value)
    if one_of is not None and (not isinstance(one_of, list) or not all(isinstance(v, str) for v in one_of)):
        raise sec.error("one_of", "a list of strings", one_of)
    return AttributeRequirement(
        attribute=_required(sec, "attribute"),
        value=value,
        one_of=tuple(one_of) if one_of is not None else None,
    )


def _mapping(sec: Section) -> OidcMapping:
    mapper = sec.section("user_mapping_provider")
    module = mapper.get_opt_str("module")
    if module is not None and module != "synapse.handlers.oidc.JinjaOidcMappingProvider":
        raise mapper.error("module", "the default Jinja mapping provider (custom modules are not supported)",
                           module)  # fmt: skip
    cfg = mapper.section("config")
    return OidcMapping(
        subject_claim=cfg.get_str("subject_claim", "sub"),
        localpart_template=cfg.get_opt_str("localpart_template"),
        display_name_template=cfg.get_opt_str("display_name_template"),
        email_template=cfg.get_opt_str("email_template"),
    )


@dataclass(frozen=True, slots=True)
class LoginViaExistingSession:
    """Synapse's `login_via_existing_session`: POST /login/get_token (MSC3882)."""

    enabled: bool = False
    require_ui_auth: bool = True
    token_timeout: int = 5 * 60 * 1000  # ms


def read_login_via_existing_session(root: Section) -> LoginViaExistingSession:
    sec = root.section("login_via_existing_session")
    return LoginViaExistingSession(
        enabled=sec.get_bool("enabled", False),
        require_ui_auth=sec.get_bool("require_ui_auth", True),
        token_timeout=sec.get_duration("token_timeout", 5 * 60 * 1000),
    )
