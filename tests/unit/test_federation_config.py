"""Federation transport config: Synapse's key names, defaults and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config.build import build_config
from homeserver.config.errors import ConfigError
from homeserver.crypto.keys import load_or_create_signing_key

TLS_LISTENER = {"port": 8448, "type": "http", "tls": True, "resources": [{"names": ["federation"]}]}


def files(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    return str(cert), str(key)


def build(**raw: Any) -> Any:
    return build_config(raw)


def test_defaults() -> None:
    fed = build().federation
    assert fed.verify_certificates is True
    assert fed.custom_ca_list == ()
    assert fed.old_signing_keys == ()
    assert fed.destination_min_retry_interval == 600_000
    assert fed.destination_retry_multiplier == 2
    assert fed.destination_max_retry_interval == 7 * 24 * 3600 * 1000
    assert fed.tls_certificate_path is None


def test_tls_listener_with_certificate(tmp_path: Path) -> None:
    cert, key = files(tmp_path)
    config = build(listeners=[TLS_LISTENER], tls_certificate_path=cert, tls_private_key_path=key)
    assert config.listeners[0].tls is True
    assert config.listeners[0].resources == ("federation",)
    assert config.federation.tls_certificate_path == cert
    assert config.unknown_keys == ()


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        ({}, "tls_certificate_path", "missing"),
        ({"tls_certificate_path": "CERT"}, "tls_private_key_path", "missing"),
        (
            {"tls_certificate_path": "/nonexistent.pem", "tls_private_key_path": "KEY"},
            "tls_certificate_path",
            "no such file",
        ),
    ],
)
def test_tls_listener_errors(tmp_path: Path, extra: dict[str, str], path: str, message: str) -> None:
    cert, key = files(tmp_path)
    raw = {k: (cert if v == "CERT" else key if v == "KEY" else v) for k, v in extra.items()}
    with pytest.raises(ConfigError) as info:
        build(listeners=[TLS_LISTENER], **raw)
    assert info.value.path == path
    assert message in str(info.value)


def test_custom_ca_list_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build(federation_custom_ca_list=[str(tmp_path / "missing.pem")])
    assert info.value.path == "federation_custom_ca_list[0]"


def test_retry_settings() -> None:
    fed = build(
        federation={
            "destination_min_retry_interval": "30s",
            "destination_retry_multiplier": 3,
            "destination_max_retry_interval": "1h",
        }
    ).federation
    assert (fed.destination_min_retry_interval, fed.destination_retry_multiplier) == (30_000, 3)
    assert fed.destination_max_retry_interval == 3_600_000
    with pytest.raises(ConfigError) as info:
        build(federation={"destination_min_retry_interval": "2h", "destination_max_retry_interval": "1h"})
    assert info.value.path == "federation.destination_max_retry_interval"
    with pytest.raises(ConfigError) as info:
        build(federation={"destination_retry_multiplier": 0.5})
    assert info.value.path == "federation.destination_retry_multiplier"


def test_old_signing_keys(tmp_path: Path) -> None:
    old = load_or_create_signing_key(str(tmp_path / "old.key"))
    fed = build(
        old_signing_keys={old.key_id: {"key": old.verify_key_base64, "expired_ts": 1_600_000_000_000}}
    ).federation
    assert [(k.key_id, k.key, k.expired_ts) for k in fed.old_signing_keys] == [
        (old.key_id, old.verify_key_base64, 1_600_000_000_000)
    ]
    with pytest.raises(ConfigError) as info:
        build(old_signing_keys={old.key_id: {"key": "not base64!", "expired_ts": 1}})
    assert info.value.path == f"old_signing_keys.{old.key_id}.key"
    with pytest.raises(ConfigError) as info:
        build(old_signing_keys={old.key_id: {"key": old.verify_key_base64}})
    assert info.value.path == f"old_signing_keys.{old.key_id}.expired_ts"


def test_ip_ranges_and_whitelist() -> None:
    config = build(ip_range_whitelist=["127.0.0.0/8", "::1/128"], federation_domain_whitelist=["a.example"])
    assert "127.0.0.0/8" in config.ip_range_blacklist  # private ranges denied by default
    assert config.ip_range_whitelist == ("127.0.0.0/8", "::1/128")
    assert config.federation_domain_whitelist == ("a.example",)
    assert build(trusted_key_servers=[]).trusted_key_servers == ()
