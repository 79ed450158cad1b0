"""The start-up "not implemented" warning lists only keys nothing reads; TURN keys are typed."""

from __future__ import annotations

import pytest

from homeserver.config import ConfigError, load_config


def test_implemented_keys_are_not_reported_unknown() -> None:
    config = load_config(
        env={},
        overrides={
            "turn_uris": ["turn:turn.example.com:3478?transport=udp"],
            "turn_shared_secret": "s3cret",
            "turn_username": "u",
            "turn_password": "p",
            "turn_user_lifetime": "2h",
            "require_membership_for_aliases": False,
            "cas_config": {"enabled": True},
        },
    )
    assert config.unknown_keys == ("cas_config",)
    assert config.turn.uris == ("turn:turn.example.com:3478?transport=udp",)
    assert config.turn.user_lifetime == 2 * 3600 * 1000
    assert config.require_membership_for_aliases is False
    assert "s3cret" not in repr(config)


def test_turn_lifetime_is_validated() -> None:
    with pytest.raises(ConfigError, match="turn_user_lifetime"):
        load_config(env={}, overrides={"turn_user_lifetime": "soon"})
