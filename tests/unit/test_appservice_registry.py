"""Appservice namespaces (appservice/registry.py): masquerading and exclusivity, as Synapse applies them."""

from __future__ import annotations

import pytest

from homeserver.appservice.registry import (
    ApplicationService,
    InMemoryAppServiceRegistry,
    Namespace,
    check_alias_not_exclusive,
    check_appservice_may_register,
    check_user_id_not_exclusive,
    masquerade_target,
)
from homeserver.core.errors import MatrixError

IRC = ApplicationService(
    id="irc",
    as_token="as-irc",
    hs_token="hs-irc",
    sender="@ircbot:hs.example",
    users=(Namespace(r"@irc_.*:hs\.example", exclusive=True),),
    aliases=(Namespace(r"#irc_.*:hs\.example", exclusive=True),),
)
SHARED = ApplicationService(
    id="bots",
    as_token="as-bots",
    hs_token="hs-bots",
    sender="@botmaster:hs.example",
    users=(Namespace(r"@bot_.*", exclusive=False),),
)


def errcode(exc: pytest.ExceptionInfo[MatrixError]) -> tuple[int, str]:
    return exc.value.status, exc.value.errcode


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        (None, "@ircbot:hs.example"),  # no ?user_id=: the sender
        ("@ircbot:hs.example", "@ircbot:hs.example"),
        ("@irc_alice:hs.example", "@irc_alice:hs.example"),
    ],
)
def test_masquerade_inside_namespace(user_id: str | None, expected: str) -> None:
    assert masquerade_target(IRC, user_id) == expected


@pytest.mark.parametrize(
    "user_id",
    [
        "@alice:hs.example",  # an ordinary user
        "@x_irc_alice:hs.example",  # the regex is matched from the start of the id
        "@irc_alice:other.example",  # another server
        "@botmaster:hs.example",  # another appservice's sender
        "not a user id",
    ],
)
def test_masquerade_outside_namespace_is_forbidden(user_id: str) -> None:
    with pytest.raises(MatrixError) as exc:
        masquerade_target(IRC, user_id)
    assert errcode(exc) == (403, "M_FORBIDDEN")


def test_non_exclusive_namespace_still_allows_masquerading() -> None:
    assert masquerade_target(SHARED, "@bot_1:anywhere.example") == "@bot_1:anywhere.example"
    assert not SHARED.is_exclusive_user("@bot_1:anywhere.example")
    assert SHARED.is_exclusive_user("@botmaster:hs.example")  # the sender is always its own


def test_exclusive_user_namespace_blocks_others_from_registering() -> None:
    registry = InMemoryAppServiceRegistry([IRC, SHARED])
    with pytest.raises(MatrixError) as exc:
        check_user_id_not_exclusive(registry, "@irc_bob:hs.example")
    assert errcode(exc) == (400, "M_EXCLUSIVE")
    with pytest.raises(MatrixError) as exc:
        check_user_id_not_exclusive(registry, "@irc_bob:hs.example", SHARED)
    assert errcode(exc) == (400, "M_EXCLUSIVE")
    check_user_id_not_exclusive(registry, "@irc_bob:hs.example", IRC)  # its own namespace
    check_user_id_not_exclusive(registry, "@bot_7:hs.example")  # non-exclusive namespace
    check_user_id_not_exclusive(registry, "@alice:hs.example")


def test_appservice_registers_only_inside_its_namespace() -> None:
    check_appservice_may_register(IRC, "@irc_carol:hs.example")
    with pytest.raises(MatrixError) as exc:
        check_appservice_may_register(IRC, "@carol:hs.example")
    assert errcode(exc) == (400, "M_EXCLUSIVE")


def test_exclusive_alias_namespace() -> None:
    registry = InMemoryAppServiceRegistry([IRC, SHARED])
    with pytest.raises(MatrixError) as exc:
        check_alias_not_exclusive(registry, "#irc_chan:hs.example")
    assert errcode(exc) == (400, "M_EXCLUSIVE")
    check_alias_not_exclusive(registry, "#irc_chan:hs.example", IRC)
    check_alias_not_exclusive(registry, "#chan:hs.example")


def test_registry_lookup_by_token_and_duplicates() -> None:
    registry = InMemoryAppServiceRegistry([IRC])
    assert registry.get_by_token("as-irc") is IRC
    assert registry.get_by_token("hs-irc") is None  # the hs_token authenticates the other direction
    assert registry.get_by_token("nope") is None
    registry.add(SHARED)
    assert [s.id for s in registry.all()] == ["irc", "bots"]
    with pytest.raises(ValueError):
        registry.add(IRC)
