"""Registration files: valid ones load, bad ones name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.appservice.loading import load_registrations
from homeserver.config.errors import ConfigError

GOOD = """
id: bridge
url: http://127.0.0.1:9000
as_token: as-secret
hs_token: hs-secret
sender_localpart: _bridge_bot
rate_limited: false
receive_ephemeral: true
org.matrix.msc3202: true
protocols: [irc]
namespaces:
  users:
    - exclusive: true
      regex: '@_bridge_.*:example.org'
  aliases:
    - exclusive: false
      regex: '#_bridge_.*:example.org'
"""


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_valid_registration_loads(tmp_path: Path) -> None:
    [service] = load_registrations([_write(tmp_path, "a.yaml", GOOD)], "example.org")
    assert service.id == "bridge"
    assert service.sender == "@_bridge_bot:example.org"
    assert service.url == "http://127.0.0.1:9000"
    assert service.rate_limited is False
    assert service.receive_ephemeral and service.msc3202
    assert service.protocols == ("irc",)
    assert service.is_exclusive_user("@_bridge_x:example.org")
    assert not service.is_exclusive_user("@alice:example.org")
    assert service.is_interested_in_alias("#_bridge_room:example.org")
    assert not service.is_exclusive_alias("#_bridge_room:example.org")


def test_ephemeral_keys_stable_and_unstable(tmp_path: Path) -> None:
    """Synapse sends `ephemeral` for `receive_ephemeral` and `de.sorunome.msc2409.ephemeral` for
    the unstable key: which one was set decides the transaction key."""
    [stable] = load_registrations([_write(tmp_path, "a.yaml", GOOD)], "example.org")
    assert (stable.receive_ephemeral, stable.unstable_ephemeral, stable.wants_ephemeral) == (
        True,
        False,
        True,
    )
    text = GOOD.replace("receive_ephemeral: true", "de.sorunome.msc2409.push_ephemeral: true")
    [unstable] = load_registrations([_write(tmp_path, "b.yaml", text)], "example.org")
    assert (unstable.receive_ephemeral, unstable.unstable_ephemeral, unstable.wants_to_device) == (
        False,
        True,
        True,
    )
    text = GOOD.replace("receive_ephemeral: true", "push_to_device: true")
    [to_device] = load_registrations([_write(tmp_path, "c.yaml", text)], "example.org")
    assert (to_device.wants_ephemeral, to_device.wants_to_device) == (False, True)


def test_null_url_is_allowed(tmp_path: Path) -> None:
    text = GOOD.replace("url: http://127.0.0.1:9000", "url: null")
    [service] = load_registrations([_write(tmp_path, "a.yaml", text)], "example.org")
    assert service.url is None


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("url: http://127.0.0.1:9000\n", "", "url"),
        ("as_token: as-secret\n", "", "as_token"),
        ("hs_token: hs-secret", "hs_token: 5", "hs_token"),
        ("sender_localpart: _bridge_bot", "sender_localpart: '@x:y'", "sender_localpart"),
        ("exclusive: true", "exclusive: 'yes'", "namespaces.users[0].exclusive"),
        ("regex: '@_bridge_.*:example.org'", "regex: '@(['", "namespaces.users[0].regex"),
        ("rate_limited: false", "rate_limited: 3", "rate_limited"),
        ("protocols: [irc]", "protocols: irc", "protocols"),
        ("url: http://127.0.0.1:9000", "url: ftp://x", "url"),
    ],
)
def test_bad_registration_names_file_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert old in GOOD
    path = _write(tmp_path, "bad.yaml", GOOD.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_registrations([path], "example.org")
    assert path in str(err.value)
    assert f": {key}:" in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_registrations([str(tmp_path / "nope.yaml")], "example.org")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_registrations([_write(tmp_path, "y.yaml", "id: [")], "example.org")


@pytest.mark.parametrize("field", ["id", "as_token", "hs_token"])
def test_duplicates_refuse_to_start(tmp_path: Path, field: str) -> None:
    first = _write(tmp_path, "a.yaml", GOOD)
    other = GOOD.replace("id: bridge", "id: other").replace("as-secret", "as-2").replace("hs-secret", "hs-2")
    value = {"id": "bridge", "as_token": "as-secret", "hs_token": "hs-secret"}[field]
    other = other.replace(
        {"id": "id: other", "as_token": "as-2", "hs_token": "hs-2"}[field],
        f"id: {value}" if field == "id" else value,
    )
    second = _write(tmp_path, "b.yaml", other)
    with pytest.raises(ConfigError) as err:
        load_registrations([first, second], "example.org")
    assert "b.yaml" in str(err.value) and field in str(err.value)


def test_cli_refuses_to_start_with_a_bad_registration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from homeserver.cli import _load

    bad = _write(tmp_path, "bad.yaml", GOOD.replace("exclusive: true", "exclusive: 1"))
    config = tmp_path / "homeserver.yaml"
    config.write_text(f"server_name: example.org\ndata_dir: {tmp_path}\napp_service_config_files: [{bad}]\n")
    with pytest.raises(SystemExit) as exit_info:
        _load(argparse.Namespace(config=str(config)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "bad.yaml" in err and "namespaces.users[0].exclusive" in err
