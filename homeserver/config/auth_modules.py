"""Password providers: Synapse's `modules:` list (and the legacy `password_providers:`).

Only the LDAP provider is implemented, read from exactly the block Synapse operators write for
matrix-synapse-ldap3 (`module: ldap_auth_provider.LdapAuthProviderModule`, or the legacy
`ldap_auth_provider.LdapAuthProvider` under `password_providers`), so their configs work
unchanged. Any other module is reported in the start-up warning about unimplemented keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section

LDAP_MODULES = frozenset({"ldap_auth_provider.LdapAuthProviderModule", "ldap_auth_provider.LdapAuthProvider"})


@dataclass(frozen=True, slots=True)
class LdapConfig:
    uris: tuple[str, ...]  # tried in order (ldap:// or ldaps://)
    start_tls: bool
    base: str
    uid_attr: str
    mail_attr: str
    name_attr: str
    # Search mode (a bind account finds the user's DN): bind_dn set. Simple mode otherwise: the
    # user binds as `{uid_attr}={localpart},{base}`.
    bind_dn: str | None
    bind_password: str | None
    filter: str | None  # extra condition ANDed into the user search, e.g. a memberOf clause
    validate_cert: bool
    ca_file: str | None
    # Ours (matrix-synapse-ldap3 has none): a dead directory fails logins in seconds, not minutes.
    connect_timeout_s: float
    read_timeout_s: float

    @property
    def search_mode(self) -> bool:
        return self.bind_dn is not None


def read_auth_modules(root: Section, unsupported: list[str]) -> LdapConfig | None:
    """The LDAP provider's config if one is enabled; other modules go to `unsupported`."""
    ldap: LdapConfig | None = None
    for list_key in ("modules", "password_providers"):
        for entry in root.sections(list_key):
            name = entry.get_opt_str("module")
            if name is None:
                raise ConfigError("every entry needs a `module`", entry.path)
            config = entry.section("config")
            if name not in LDAP_MODULES:
                config.mark_read(*config.keys())
                unsupported.append(f"{entry.path} ({name})")
                continue
            parsed = _read_ldap(config)
            if parsed is None:
                continue
            if ldap is not None:
                raise ConfigError("only one LDAP provider may be enabled", entry.path)
            ldap = parsed
    return ldap


def _read_ldap(sec: Section) -> LdapConfig | None:
    if not sec.get_bool("enabled", True):
        sec.mark_read(*sec.keys())
        return None
    uri = sec.raw("uri")
    if isinstance(uri, str):
        uris: tuple[str, ...] = (uri,)
    elif isinstance(uri, list) and uri and all(isinstance(u, str) for u in uri):
        uris = tuple(uri)
    else:
        raise sec.error("uri", 'an LDAP URI such as "ldap://ldap.example.com:389" (or a list)', uri)
    for value in uris:
        if not value.startswith(("ldap://", "ldaps://")):
            raise sec.error("uri", "ldap:// or ldaps:// URIs", value)
    base = sec.get_opt_str("base")
    if not base:
        raise ConfigError("missing: the search base, e.g. ou=people,dc=example,dc=com", sec.key_path("base"))
    attributes = sec.section("attributes")
    bind_dn = sec.get_opt_str("bind_dn")
    bind_password = sec.get_opt_str("bind_password")
    password_file = sec.get_opt_str("bind_password_file")
    if password_file is not None:
        try:
            bind_password = Path(password_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"cannot read it: {e.strerror}", sec.key_path("bind_password_file")) from e
    if bind_dn is not None and bind_password is None:
        raise ConfigError("bind_dn needs bind_password or bind_password_file", sec.path)
    tls = sec.section("tls_options")
    validate = tls.raw("validate")
    # matrix-synapse-ldap3 passes tls_options to ldap3.Tls: validate is an ssl.CERT_* number there.
    validate_cert = validate is None or validate not in (0, False, "CERT_NONE")
    return LdapConfig(
        uris=uris,
        start_tls=sec.get_bool("start_tls", False),
        base=base,
        uid_attr=attributes.get_str("uid", "uid"),
        mail_attr=attributes.get_str("mail", "mail"),
        name_attr=attributes.get_str("name", "cn"),
        bind_dn=bind_dn,
        bind_password=bind_password,
        filter=_filter(sec),
        validate_cert=validate_cert,
        ca_file=tls.get_opt_str("ca_certs_file"),
        connect_timeout_s=sec.get_float("connect_timeout", 3.0, minimum=0.1),
        read_timeout_s=sec.get_float("read_timeout", 10.0, minimum=0.1),
    )


def _filter(sec: Section) -> str | None:
    value = sec.get_opt_str("filter")
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not (value.startswith("(") and value.endswith(")")):
        raise sec.error("filter", "an LDAP filter in parentheses, e.g. (objectClass=person)", value)
    return value
