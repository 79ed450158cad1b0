"""Server ACL matching (spec: m.room.server_acl), with the spec's example."""

from __future__ import annotations

import pytest

from homeserver.core.errors import MatrixError
from homeserver.federation.acl import check_server_acl, server_allowed

SPEC_EXAMPLE = {"allow": ["*"], "allow_ip_literals": False, "deny": ["*.evil.com", "evil.com"]}


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("matrix.org", True),
        ("good.example:8448", True),
        ("evil.com", False),
        ("evil.com:8448", False),  # ports are ignored
        ("sub.evil.com", False),
        ("EVIL.COM", False),  # globs ignore case
        ("notevil.com", True),
        ("1.2.3.4", False),  # allow_ip_literals: false
        ("1.2.3.4:8448", False),
        ("[::1]:8448", False),
    ],
)
def test_spec_example(server: str, allowed: bool) -> None:
    assert server_allowed(server, SPEC_EXAMPLE) is allowed


def test_no_acl_allows_everyone() -> None:
    assert server_allowed("anything.example", None)


def test_empty_allow_denies_everyone() -> None:
    assert not server_allowed("matrix.org", {"deny": []})
    assert not server_allowed("matrix.org", {})


def test_ip_literals_allowed_by_default() -> None:
    assert server_allowed("1.2.3.4", {"allow": ["*"]})
    assert server_allowed("[2001:db8::1]:8448", {"allow": ["*"]})


def test_question_mark_and_malformed_entries() -> None:
    acl = {"allow": ["hs?.example", 42, None], "deny": "not a list"}
    assert server_allowed("hs1.example", acl)
    assert not server_allowed("hs10.example", acl)


def test_deny_wins_over_allow() -> None:
    assert not server_allowed("a.example", {"allow": ["a.example"], "deny": ["a.*"]})


def test_check_raises_403() -> None:
    with pytest.raises(MatrixError) as info:
        check_server_acl("evil.com", SPEC_EXAMPLE)
    assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")
    check_server_acl("matrix.org", SPEC_EXAMPLE)
