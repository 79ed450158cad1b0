"""Reading the directory: people, org units and groups, with paged searches through ldap3.

Everything is read before the sync changes anything, so an unreachable or failing directory
aborts the run with `DirectoryError` and the homeserver is left as it was."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import parse_dn

from .config import SyncConfig

logger = logging.getLogger(__name__)

# Matrix localparts we create (the same rule as LDAP login: lower case, no leading underscore).
LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")


class DirectoryError(Exception):
    """The directory could not be read completely; nothing was changed."""


def normalize_dn(dn: str) -> str:
    """A DN in one canonical spelling (attribute types and values lower-cased, no spaces around
    separators), so `OU=Sales, DC=x` and `ou=sales,dc=x` compare equal."""
    try:
        parts = parse_dn(dn, escape=True, strip=True)
    except LDAPException:
        return dn.strip().lower()
    return ",".join(f"{attr.lower()}={value.lower()}" for attr, value, _sep in parts)


def parent_dn(ndn: str) -> str | None:
    """The parent of a normalised DN (splits on the first unescaped comma)."""
    i = 0
    while i < len(ndn):
        if ndn[i] == "\\":
            i += 2
            continue
        if ndn[i] == ",":
            return ndn[i + 1 :]
        i += 1
    return None


def rdn_value(dn: str) -> str:
    try:
        return str(parse_dn(dn, escape=False, strip=True)[0][1])
    except (LDAPException, IndexError):
        return dn


@dataclass(frozen=True, eq=False)  # one object per entry: hashed by identity in member sets
class Person:
    dn: str
    ndn: str
    localpart: str
    displayname: str
    email: str | None
    attributes: dict[str, tuple[str, ...]]  # what the power-level rules look at (lower-cased keys)


@dataclass(frozen=True)
class Unit:
    dn: str
    ndn: str
    uid: str  # the id attribute (entryUUID), or the DN when the directory has none
    name: str
    parent: str | None  # ndn of the nearest unit above it


@dataclass(frozen=True)
class Group:
    dn: str
    ndn: str
    uid: str
    name: str
    members: tuple[str, ...]  # normalised member DNs, or localparts when not member_is_dn
    unit: str | None  # ndn of the unit it feeds, when groups.unit_attribute names one


@dataclass(frozen=True)
class Directory:
    people: tuple[Person, ...]
    units: tuple[Unit, ...]
    groups: tuple[Group, ...]
    skipped: tuple[str, ...]  # DNs of people left out, with the reason


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.hex()  # binary ids such as Active Directory's objectGUID
    return str(value)


def _values(attrs: dict[str, Any], name: str | None) -> list[str]:
    if not name:
        return []
    for key, value in attrs.items():
        if key.lower() == name.lower():
            return [_text(v) for v in value] if isinstance(value, (list, tuple)) else [_text(value)]
    return []


def _first(attrs: dict[str, Any], name: str | None) -> str | None:
    values = _values(attrs, name)
    return values[0].strip() if values and values[0].strip() else None


class DirectoryReader:
    def __init__(self, config: SyncConfig) -> None:
        self.config = config

    def _connect(self) -> ldap3.Connection:
        lc = self.config.ldap
        server = ldap3.Server(lc.uri, connect_timeout=lc.timeout, get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server,
            user=lc.bind_dn,
            password=lc.bind_password,
            receive_timeout=lc.timeout,
            raise_exceptions=True,
            read_only=True,
        )
        conn.open()
        if lc.start_tls:
            conn.start_tls()
        conn.bind()
        return conn

    def _search(
        self, conn: ldap3.Connection, base: str, filt: str, attributes: list[str]
    ) -> list[dict[str, Any]]:
        entries = conn.extend.standard.paged_search(
            base,
            filt,
            search_scope=ldap3.SUBTREE,
            attributes=attributes,
            paged_size=self.config.ldap.page_size,
            generator=False,
        )
        return [e for e in entries if e.get("type") == "searchResEntry"]

    def read(self) -> Directory:
        """The whole directory, or `DirectoryError` (LDAP down, bad credentials, bad base...)."""
        uri = self.config.ldap.uri
        try:
            conn = self._connect()
        except LDAPException as exc:
            raise DirectoryError(f"cannot reach the LDAP directory at {uri}: {exc}") from None
        try:
            return self._read_all(conn)
        except LDAPException as exc:
            raise DirectoryError(f"reading the LDAP directory at {uri} failed: {exc}") from None
        finally:
            try:
                conn.unbind()
            except LDAPException:
                pass

    def _read_all(self, conn: ldap3.Connection) -> Directory:
        cfg = self.config
        id_attr = cfg.ldap.id_attribute
        excluded = [normalize_dn(dn) for dn in cfg.units.exclude]

        def is_excluded(ndn: str) -> bool:
            return any(ndn == ex or ndn.endswith("," + ex) for ex in excluded)

        raw_units = self._search(conn, cfg.units.base, cfg.units.filter, [cfg.units.name_attribute, id_attr])
        unit_ndns: dict[str, dict[str, Any]] = {}
        for entry in raw_units:
            ndn = normalize_dn(entry["dn"])
            if not is_excluded(ndn):
                unit_ndns[ndn] = entry

        def nearest_unit(ndn: str) -> str | None:
            up = parent_dn(ndn)
            while up is not None:
                if up in unit_ndns:
                    return up
                up = parent_dn(up)
            return None

        units = tuple(
            Unit(
                dn=entry["dn"],
                ndn=ndn,
                uid=_first(entry["attributes"], id_attr) or ndn,
                name=_first(entry["attributes"], cfg.units.name_attribute) or rdn_value(entry["dn"]),
                parent=nearest_unit(ndn),
            )
            for ndn, entry in unit_ndns.items()
        )

        rule_attrs = sorted({rule.attribute for rule in cfg.power_levels})
        uc = cfg.users
        wanted = [uc.localpart_attribute, uc.displayname_attribute, *rule_attrs]
        if uc.email_attribute:
            wanted.append(uc.email_attribute)
        people: dict[str, Person] = {}
        skipped: list[str] = []
        for entry in self._search(conn, uc.base, uc.filter, wanted):
            attrs = entry["attributes"]
            raw_localpart = _first(attrs, uc.localpart_attribute)
            localpart = raw_localpart.lower() if raw_localpart else None
            if not localpart or not LOCALPART.fullmatch(localpart) or localpart.startswith("_"):
                skipped.append(
                    f"{entry['dn']}: {uc.localpart_attribute}={raw_localpart!r} is no valid Matrix localpart"
                )
                continue
            if localpart in people:
                skipped.append(
                    f"{entry['dn']}: {uc.localpart_attribute}={raw_localpart!r} "
                    f"already used by {people[localpart].dn}"
                )
                continue
            email = _first(attrs, uc.email_attribute)
            people[localpart] = Person(
                dn=entry["dn"],
                ndn=normalize_dn(entry["dn"]),
                localpart=localpart,
                displayname=_first(attrs, uc.displayname_attribute) or localpart,
                email=email.lower() if email else None,
                attributes={a.lower(): tuple(_values(attrs, a)) for a in rule_attrs},
            )
        for reason in skipped:
            logger.warning("skipped: %s", reason)

        groups: list[Group] = []
        gc = cfg.groups
        if gc is not None:
            wanted = [gc.name_attribute, gc.member_attribute, "cn", id_attr]
            if gc.unit_attribute:
                wanted.append(gc.unit_attribute)
            for entry in self._search(conn, gc.base, gc.filter, wanted):
                attrs = entry["attributes"]
                members = _values(attrs, gc.member_attribute)
                unit_value = _first(attrs, gc.unit_attribute)
                unit = normalize_dn(unit_value) if unit_value else None
                if unit is not None and unit not in unit_ndns:
                    logger.warning(
                        "group %s names unknown unit %s; it gets a room of its own", entry["dn"], unit_value
                    )
                    unit = None
                groups.append(
                    Group(
                        dn=entry["dn"],
                        ndn=normalize_dn(entry["dn"]),
                        uid=_first(attrs, id_attr) or normalize_dn(entry["dn"]),
                        name=_first(attrs, gc.name_attribute)
                        or _first(attrs, "cn")
                        or rdn_value(entry["dn"]),
                        members=tuple(
                            normalize_dn(m) if gc.member_is_dn else m.strip().lower() for m in members
                        ),
                        unit=unit,
                    )
                )
        return Directory(tuple(people.values()), units, tuple(groups), tuple(skipped))
