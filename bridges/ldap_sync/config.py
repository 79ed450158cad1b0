"""The sync's YAML config as frozen dataclasses. Every attribute name, search base and OU is
explicit config: nothing here knows one directory's layout."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class HomeserverConfig:
    url: str
    server_name: str
    registration: str  # the appservice registration file (as_token, sender_localpart)
    admin_access_token: str | None = None  # used once, to make the bot a server admin


@dataclass(frozen=True)
class LdapConfig:
    uri: str
    bind_dn: str | None = None
    bind_password: str | None = None
    bind_password_file: str | None = None  # read at start (keeps the secret out of the config)
    start_tls: bool = False
    timeout: float = 5.0
    page_size: int = 500
    id_attribute: str = "entryUUID"  # stable across renames/moves; AD: objectGUID


@dataclass(frozen=True)
class UsersConfig:
    base: str
    filter: str = "(objectClass=inetOrgPerson)"
    localpart_attribute: str = "uid"
    displayname_attribute: str = "cn"
    email_attribute: str | None = "mail"


@dataclass(frozen=True)
class UnitsConfig:
    base: str
    filter: str = "(objectClass=organizationalUnit)"
    name_attribute: str = "description"  # falls back to the RDN value (e.g. the `ou`)
    members: str = "subtree"  # subtree: people of sub-units belong to the unit too; direct: only its own
    space_name: str = "{name}"
    room_name: str = "{name}"
    exclude: tuple[str, ...] = ()  # OUs (and their subtrees) not mirrored


@dataclass(frozen=True)
class GroupsConfig:
    base: str
    filter: str = "(objectClass=groupOfNames)"
    name_attribute: str = "description"  # falls back to `cn`
    member_attribute: str = "member"
    member_is_dn: bool = True  # false: values are user localparts (posixGroup memberUid)
    unit_attribute: str | None = None  # a group naming a unit DN here adds its members to that unit
    parent: str | None = None  # unit DN whose space holds the group rooms (default: the units base)
    room_name: str = "{name}"


@dataclass(frozen=True)
class PowerRule:
    attribute: str
    values: tuple[str, ...]
    level: int


@dataclass(frozen=True)
class LeaversConfig:
    deactivate: bool = True
    erase: bool = False
    handover_to: str | None = None  # rooms a leaver administered go to this user first
    max_per_run: int | None = None  # more leavers than this in one run: abort (a filter gone wrong)


@dataclass(frozen=True)
class SyncConfig:
    homeserver: HomeserverConfig
    ldap: LdapConfig
    users: UsersConfig
    units: UnitsConfig
    groups: GroupsConfig | None = None
    power_levels: tuple[PowerRule, ...] = ()
    leavers: LeaversConfig = field(default_factory=LeaversConfig)
    state_db: str = "ldap-sync.db"
    concurrency: int = 4


def _section(raw: dict[str, Any], name: str, *, required: bool = True) -> dict[str, Any] | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise ConfigError(f"{name}: missing section")
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: must be a mapping")
    return value


def _build(cls: type, name: str, data: dict[str, Any], tuples: tuple[str, ...] = ()) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {', '.join(unknown)}")
    values = dict(data)
    for key in tuples:
        if key in values:
            if not isinstance(values[key], list) or not all(isinstance(v, str) for v in values[key]):
                raise ConfigError(f"{name}.{key}: must be a list of strings")
            values[key] = tuple(values[key])
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _check_types(name: str, obj: Any) -> None:
    for key, spec in obj.__dataclass_fields__.items():
        value = getattr(obj, key)
        expected = str(spec.type)
        if value is None:
            if "None" not in expected:
                raise ConfigError(f"{name}.{key}: required")
        elif expected.startswith("str") and not isinstance(value, str):
            raise ConfigError(f"{name}.{key}: must be a string")
        elif expected == "bool" and not isinstance(value, bool):
            raise ConfigError(f"{name}.{key}: must be true or false")
        elif expected in ("int", "float") and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            raise ConfigError(f"{name}.{key}: must be a number")


def parse_config(raw: Any) -> SyncConfig:
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a YAML mapping")
    hs = _build(HomeserverConfig, "homeserver", _section(raw, "homeserver") or {})
    ldap = _build(LdapConfig, "ldap", _section(raw, "ldap") or {})
    users = _build(UsersConfig, "users", _section(raw, "users") or {})
    units = _build(UnitsConfig, "units", _section(raw, "units") or {}, ("exclude",))
    groups_raw = _section(raw, "groups", required=False)
    groups = _build(GroupsConfig, "groups", groups_raw) if groups_raw is not None else None
    leavers = _build(LeaversConfig, "leavers", _section(raw, "leavers", required=False) or {})
    for name, obj in (
        ("homeserver", hs),
        ("ldap", ldap),
        ("users", users),
        ("units", units),
        ("groups", groups),
        ("leavers", leavers),
    ):
        if obj is not None:
            _check_types(name, obj)
    if units.members not in ("subtree", "direct"):
        raise ConfigError("units.members: must be 'subtree' or 'direct'")
    for template_name in ("space_name", "room_name"):
        _check_template(f"units.{template_name}", getattr(units, template_name))
    if groups is not None:
        _check_template("groups.room_name", groups.room_name)
    if leavers.handover_to is not None and not re.fullmatch(r"@[^:]+:.+", leavers.handover_to):
        raise ConfigError("leavers.handover_to: must be a user id (@user:server)")
    if ldap.bind_password_file is not None:
        if ldap.bind_password is not None:
            raise ConfigError("ldap: bind_password and bind_password_file are exclusive")
        try:
            secret = Path(ldap.bind_password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"ldap.bind_password_file: cannot read it ({exc.strerror})") from None
        ldap = replace(ldap, bind_password=secret)
    limit = leavers.max_per_run
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError("leavers.max_per_run: must be a non-negative integer")
    if ldap.page_size < 1 or ldap.timeout <= 0:
        raise ConfigError("ldap.page_size and ldap.timeout: must be positive")
    rules_raw = raw.get("power_levels") or []
    if not isinstance(rules_raw, list):
        raise ConfigError("power_levels: must be a list")
    rules = []
    for i, item in enumerate(rules_raw):
        if not isinstance(item, dict):
            raise ConfigError(f"power_levels[{i}]: must be a mapping")
        rule = _build(PowerRule, f"power_levels[{i}]", item, ("values",))
        if (
            not isinstance(rule.attribute, str)
            or isinstance(rule.level, bool)
            or not isinstance(rule.level, int)
        ):
            raise ConfigError(f"power_levels[{i}]: needs 'attribute' (string) and 'level' (integer)")
        if not 1 <= rule.level <= 100:
            raise ConfigError(f"power_levels[{i}].level: must be between 1 and 100")
        rules.append(rule)
    extra = sorted(
        set(raw)
        - {
            "homeserver",
            "ldap",
            "users",
            "units",
            "groups",
            "power_levels",
            "leavers",
            "state_db",
            "concurrency",
        }
    )
    if extra:
        raise ConfigError(f"unknown section(s) {', '.join(extra)}")
    state_db = raw.get("state_db", "ldap-sync.db")
    concurrency = raw.get("concurrency", 4)
    if not isinstance(state_db, str):
        raise ConfigError("state_db: must be a path")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError("concurrency: must be a positive integer")
    return SyncConfig(hs, ldap, users, units, groups, tuple(rules), leavers, state_db, concurrency)


def _check_template(name: str, template: str) -> None:
    try:
        template.format(name="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{name}: bad template ({exc}); only {{name}} is available") from None


def load_config(path: str | Path) -> SyncConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_config(raw)
