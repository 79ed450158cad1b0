"""Server signing key file handling and verify-key decoding."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from unpaddedbase64 import encode_base64

from homeserver.crypto.keys import (
    ServerSigningKey,
    decode_verify_key,
    load_or_create_signing_key,
    server_keys_response,
)
from homeserver.crypto.signing import sign_json, verify_json_signature

SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"


def test_creates_key_file_in_synapse_format(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "example.org.signing.key"
    key = load_or_create_signing_key(str(path))

    assert re.fullmatch(r"ed25519:a_[A-Za-z0-9]{4}", key.key_id)
    assert key.signing_key.alg == "ed25519"
    assert key.key_id == f"ed25519:{key.signing_key.version}"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    line = path.read_text()
    alg, version, seed = line.split()
    assert (alg, version) == ("ed25519", key.version)
    assert "=" not in seed and line.endswith("\n")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    # The published verify key is the unpadded base64 public key.
    assert key.verify_key_base64 == encode_base64(key.signing_key.verify_key.encode())


def test_reloading_returns_the_same_key(tmp_path: Path) -> None:
    path = str(tmp_path / "k.key")
    first = load_or_create_signing_key(path)
    second = load_or_create_signing_key(path)
    assert second.key_id == first.key_id
    assert second.verify_key_base64 == first.verify_key_base64
    signed = sign_json({"x": 1}, "example.org", first)
    verify_json_signature(signed, "example.org", second.key_id, second.verify_key)


def test_reads_existing_synapse_key_with_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_text(f"ed25519 1 {SEED}\n\n")
    key = load_or_create_signing_key(str(path))
    assert key.key_id == "ed25519:1"
    # The appendices' "Signing JSON" vector for {} proves the seed was decoded correctly.
    assert sign_json({}, "domain", key)["signatures"]["domain"]["ed25519:1"].startswith("K8280/U9SSy9")


@pytest.mark.parametrize("content", ["", "\n", "ed25519 1\n", "rsa 1 AAAA\n"])
def test_malformed_key_file_is_an_error_not_overwritten(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k.key"
    path.write_text(content)
    with pytest.raises(ValueError):
        load_or_create_signing_key(str(path))
    assert path.read_text() == content


def test_decode_verify_key(tmp_path: Path) -> None:
    key = load_or_create_signing_key(str(tmp_path / "k.key"))
    vk = decode_verify_key(key.key_id, key.verify_key_base64)
    assert vk.encode() == key.signing_key.verify_key.encode()
    assert getattr(vk, "version", None) == key.version
    with pytest.raises(ValueError):
        decode_verify_key("curve25519:x", key.verify_key_base64)
    with pytest.raises(ValueError):
        decode_verify_key("ed25519:x", "AAAA")
    with pytest.raises(ValueError):
        decode_verify_key("ed25519:x", "\u00e9")


def test_server_keys_response_is_self_signed(tmp_path: Path) -> None:
    key: ServerSigningKey = load_or_create_signing_key(str(tmp_path / "k.key"))
    body = server_keys_response(
        "example.org", key, 1_700_000_000_000, {"ed25519:old": {"key": "x", "expired_ts": 1}}
    )
    assert body["verify_keys"] == {key.key_id: {"key": key.verify_key_base64}}
    assert body["old_verify_keys"]["ed25519:old"]["expired_ts"] == 1
    published = decode_verify_key(key.key_id, body["verify_keys"][key.key_id]["key"])
    verify_json_signature(body, "example.org", key.key_id, published)
