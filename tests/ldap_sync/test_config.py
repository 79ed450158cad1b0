"""The sync's config: explicit mapping, every bad value refused with the key named."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from bridges.ldap_sync.__main__ import parse_interval
from bridges.ldap_sync.config import ConfigError, parse_config
from bridges.ldap_sync.directory import normalize_dn, parent_dn

from .harness import sync_config_dict


def base(tmp_path: Path) -> dict[str, Any]:
    return sync_config_dict(
        tmp_path, "http://127.0.0.1:8008", "ldap://127.0.0.1:389", tmp_path / "reg.yaml", None
    )


def test_a_full_config_parses(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path))
    assert config.groups is not None and config.groups.unit_attribute == "seeAlso"
    assert config.power_levels[0].values == ("teacher",) and config.power_levels[0].level == 50
    assert config.units.members == "subtree" and config.ldap.page_size == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("ldap"), "ldap: missing section"),
        (lambda c: c["users"].update(base_dn="x"), "users: unknown key(s) base_dn"),
        (lambda c: c["users"].pop("base"), "users: "),
        (lambda c: c["units"].update(members="all"), "units.members"),
        (lambda c: c["units"].update(room_name="{unit}"), "units.room_name: bad template"),
        (lambda c: c["ldap"].update(timeout="5"), "ldap.timeout: must be a number"),
        (lambda c: c["ldap"].update(start_tls="yes"), "ldap.start_tls: must be true or false"),
        (lambda c: c["ldap"].update(page_size=0), "page_size"),
        (
            lambda c: c.update(power_levels=[{"attribute": "x", "values": ["y"], "level": 500}]),
            "between 1 and 100",
        ),
        (
            lambda c: c.update(power_levels=[{"attribute": "x", "values": "y", "level": 50}]),
            "list of strings",
        ),
        (lambda c: c.update(power_levels={"x": 1}), "power_levels: must be a list"),
        (lambda c: c["leavers"].update(handover_to="operator"), "leavers.handover_to"),
        (lambda c: c.update(extra={}), "unknown section(s) extra"),
        (lambda c: c.update(concurrency=0), "concurrency"),
        (lambda c: c["leavers"].update(max_per_run=-1), "leavers.max_per_run"),
        (
            lambda c: c["ldap"].update(bind_password=None, bind_password_file="/nonexistent/pw"),
            "ldap.bind_password_file: cannot read",
        ),
        (lambda c: c["ldap"].update(bind_password_file="/etc/hostname"), "are exclusive"),
        (lambda c: c["leavers"].update(max_per_run="5"), "leavers.max_per_run"),
        (lambda c: c.update(homeserver="x"), "homeserver: must be a mapping"),
    ],
)
def test_bad_config_is_refused(tmp_path: Path, change: Any, message: str) -> None:
    raw = base(tmp_path)
    change(raw)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(raw)


def test_intervals() -> None:
    assert parse_interval("30s") == 30 and parse_interval("10m") == 600 and parse_interval("2h") == 7200
    assert parse_interval("45") == 45
    for bad in ("0m", "-1m", "soon", "10 minutes"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_interval(bad)


def test_dn_normalisation() -> None:
    assert normalize_dn("OU=Sales, DC=Example,DC=com") == "ou=sales,dc=example,dc=com"
    assert normalize_dn("ou=3학년 2반,dc=x") == "ou=3학년 2반,dc=x"
    assert parent_dn(normalize_dn(r"cn=Smith\, John,ou=people,dc=x")) == "ou=people,dc=x"
    assert parent_dn("dc=x") is None


def test_bind_password_file(tmp_path: Path) -> None:
    raw = base(tmp_path)
    secret = tmp_path / "bind-password"
    secret.write_text("s3cret\n")
    raw["ldap"].pop("bind_password")
    raw["ldap"]["bind_password_file"] = str(secret)
    assert parse_config(raw).ldap.bind_password == "s3cret"
