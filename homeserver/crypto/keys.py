"""The server's ed25519 signing key and verify-key decoding.

The key file uses Synapse's format (`ed25519 <version> <unpadded base64 seed>`, one key per line), so
an operator can move a key between Synapse and this server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import string
from dataclasses import dataclass
from typing import Any, cast

from nacl.signing import VerifyKey
from signedjson.key import (
    decode_verify_key_bytes,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    read_signing_keys,
    write_signing_keys,
)
from signedjson.types import SigningKey
from unpaddedbase64 import decode_base64

from homeserver.crypto.signing import sign_json


@dataclass(frozen=True, slots=True)
class ServerSigningKey:
    key_id: str  # "ed25519:a_AbCd"
    signing_key: SigningKey  # nacl SigningKey carrying .alg and .version (signedjson convention)
    verify_key_base64: str  # unpadded

    @classmethod
    def from_signing_key(cls, signing_key: SigningKey) -> ServerSigningKey:
        verify_key = get_verify_key(signing_key)
        return cls(
            key_id=f"{signing_key.alg}:{signing_key.version}",
            signing_key=signing_key,
            verify_key_base64=encode_verify_key_base64(verify_key),
        )

    @property
    def version(self) -> str:
        return str(self.signing_key.version)

    @property
    def verify_key(self) -> VerifyKey:
        return self.signing_key.verify_key


def _new_key_version() -> str:
    # Synapse's shape: "a_" + 4 random alphanumerics.
    return "a_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(4))


def _read_key_file(path: str) -> ServerSigningKey:
    with open(path, encoding="utf-8") as f:
        # signedjson chokes on blank lines; hand-edited files often end with one.
        lines = [line for line in f if line.strip()]
    try:
        keys = read_signing_keys(lines)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Malformed signing key file {path}: {exc}") from exc
    if not keys:
        raise ValueError(f"Signing key file {path} contains no key")
    # Like Synapse: the first key signs; extra lines are tolerated.
    return ServerSigningKey.from_signing_key(keys[0])


def load_or_create_signing_key(path: str) -> ServerSigningKey:
    """Load the signing key at `path`, generating and writing one (mode 0600) if the file is missing.

    Creation is race-free between processes starting together: the key is written to a private temp
    file and hard-linked into place, so a loser of the race reads the winner's complete file.
    """
    if os.path.exists(path):
        return _read_key_file(path)

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    key = generate_signing_key(_new_key_version())
    tmp = f"{path}.tmp.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write_signing_keys(f, [key])
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_key_file(path)
        except OSError:
            # Filesystems without hard links: fall back to an exclusive create of the final file.
            fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd2, "w", encoding="utf-8") as f:
                write_signing_keys(f, [key])
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return ServerSigningKey.from_signing_key(key)


def decode_verify_key(key_id: str, key_base64: str) -> VerifyKey:
    """A VerifyKey (with .alg/.version) from `ed25519:<version>` and (un)padded base64.

    Raises ValueError for unknown algorithms, bad base64 or a wrong key length.
    """
    try:
        key_bytes = decode_base64(key_base64)
    except Exception as exc:  # binascii.Error and friends
        raise ValueError(f"Invalid base64 for key {key_id}") from exc
    if len(key_bytes) != 32:
        raise ValueError(f"Invalid ed25519 key length for {key_id}")
    return cast(VerifyKey, decode_verify_key_bytes(key_id, key_bytes))


def server_keys_response(
    server_name: str,
    key: ServerSigningKey,
    valid_until_ts: int,
    old_verify_keys: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The signed body of GET /_matrix/key/v2/server.

    `old_verify_keys` maps key id -> {"key": base64, "expired_ts": ms}.
    """
    body = {
        "server_name": server_name,
        "valid_until_ts": valid_until_ts,
        "verify_keys": {key.key_id: {"key": key.verify_key_base64}},
        "old_verify_keys": old_verify_keys or {},
    }
    return sign_json(body, server_name, key)
