"""Checking passwords against an LDAP directory (OpenLDAP, Active Directory) with ldap3.

Search mode (a `bind_dn` is configured), as matrix-synapse-ldap3: bind as the service account,
find exactly one entry with `(&({uid}={username}){filter})`, then bind as that entry's DN with
the user's password. Simple mode: bind directly as `{uid}={username},{base}`.

Every value from a user goes into filters and DNs escaped (`*` in a username must never match
someone else). ldap3 is blocking, so each check runs in a worker thread, with a short connect
timeout: a directory that is down makes logins fail in seconds (`LdapUnavailable`) instead of
hanging every login, and the caller can still accept local accounts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from homeserver.auth_providers import PasswordProviderUnavailable
from homeserver.config.auth_modules import LdapConfig

logger = logging.getLogger(__name__)


class LdapUnavailable(PasswordProviderUnavailable):
    """The directory could not be asked (down, unreachable, misconfigured bind account)."""


@dataclass(frozen=True, slots=True)
class LdapIdentity:
    username: str  # the uid attribute's value, as the directory has it
    dn: str
    display_name: str | None
    emails: tuple[str, ...]


class LdapAuthProvider:
    def __init__(self, config: LdapConfig) -> None:
        self.config = config

    async def authenticate(self, username: str, password: str) -> LdapIdentity | None:
        """The directory entry if `password` is right for `username`; None when the user is
        unknown or the password wrong. Raises LdapUnavailable."""
        if not username or not password:  # an empty password is an anonymous bind: never ask
            return None
        return await asyncio.to_thread(self._check, self.config.uid_attr, username, password)

    async def authenticate_by_email(self, address: str, password: str) -> LdapIdentity | None:
        """As `authenticate`, finding the user by their mail attribute (search mode only)."""
        if not address or not password or not self.config.search_mode:
            return None
        return await asyncio.to_thread(self._check, self.config.mail_attr, address, password)

    # -- in a worker thread ----------------------------------------------------------------------

    def _check(self, attribute: str, value: str, password: str) -> LdapIdentity | None:
        cfg = self.config
        if cfg.search_mode:
            with self._connection(cfg.bind_dn, cfg.bind_password) as service:
                if not service.bound:
                    logger.error("LDAP: the bind account %s was refused", cfg.bind_dn)
                    raise LdapUnavailable("the directory refused the configured bind account")
                entry = self._find(service, attribute, value)
            if entry is None:
                return None
            dn, attributes = entry
        else:
            dn = f"{escape_rdn(cfg.uid_attr)}={escape_rdn(value)},{cfg.base}"
            attributes = {}
        with self._connection(dn, password) as user:
            if not user.bound:
                return None
            if not cfg.search_mode:
                found = self._find(user, cfg.uid_attr, value)
                attributes = found[1] if found else {}
        username = _first(attributes.get(cfg.uid_attr)) or value
        return LdapIdentity(
            username=username,
            dn=dn,
            display_name=_first(attributes.get(cfg.name_attr)),
            emails=tuple(str(v) for v in _values(attributes.get(cfg.mail_attr)) if v),
        )

    def _find(self, conn: _Bound, attribute: str, value: str) -> tuple[str, dict[str, Any]] | None:
        cfg = self.config
        query = f"({attribute}={escape_filter_chars(value)})"
        if cfg.filter:
            query = f"(&{query}{cfg.filter})"
        try:
            conn.connection.search(
                cfg.base,
                query,
                search_scope=ldap3.SUBTREE,
                attributes=[cfg.uid_attr, cfg.mail_attr, cfg.name_attr],
                size_limit=2,
            )
        except LDAPException as exc:
            raise LdapUnavailable(f"search failed: {exc}") from exc
        entries = [r for r in conn.connection.response or [] if r.get("type") == "searchResEntry"]
        if len(entries) != 1:
            if len(entries) > 1:
                logger.warning("LDAP: %s=%r matches several entries; refusing", attribute, value)
            return None
        return str(entries[0]["dn"]), dict(entries[0].get("attributes") or {})

    def _connection(self, user: str | None, password: str | None) -> _Bound:
        last: Exception | None = None
        for uri in self.config.uris:
            try:
                return _Bound.open(self.config, uri, user, password)
            except LDAPException as exc:
                last = exc
                logger.warning("LDAP server %s unavailable: %s", uri, exc)
        raise LdapUnavailable(f"no LDAP server answered: {last}")


class _Bound:
    """An ldap3 connection, opened and bound (or refused); closed on exit."""

    def __init__(self, connection: ldap3.Connection, bound: bool) -> None:
        self.connection = connection
        self.bound = bound

    @classmethod
    def open(cls, cfg: LdapConfig, uri: str, user: str | None, password: str | None) -> _Bound:
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED if cfg.validate_cert else ssl.CERT_NONE,
            ca_certs_file=cfg.ca_file,
        )
        server = ldap3.Server(uri, connect_timeout=cfg.connect_timeout_s, tls=tls, get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server,
            user=user,
            password=password,
            receive_timeout=math.ceil(cfg.read_timeout_s),  # ldap3 packs it as a C integer
            raise_exceptions=False,
            auto_bind=ldap3.AUTO_BIND_NONE,
        )
        try:
            conn.open()
            if cfg.start_tls and not uri.startswith("ldaps://"):
                conn.start_tls()
            bound = bool(conn.bind())
        except LDAPException:
            conn.unbind()
            raise
        return cls(conn, bound)

    def __enter__(self) -> _Bound:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.connection.unbind()
        except LDAPException:
            pass


def _values(value: Any) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return value
    return (value,)


def _first(value: Any) -> str | None:
    values = _values(value)
    return str(values[0]) if values else None
