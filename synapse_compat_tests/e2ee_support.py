"""Client-side key material for the end-to-end encryption tests: ed25519 keys that sign JSON the way
Matrix clients do (canonical JSON without `signatures`/`unsigned`, unpadded base64), device keys,
one-time keys and cross-signing keys. Uses PyNaCl and canonicaljson only (never `homeserver`)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

from canonicaljson import encode_canonical_json
from nacl.signing import SigningKey

from .client import V3
from .harness import User

ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]
OTK_ALG = "signed_curve25519"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def random_key() -> str:
    """An unpadded base64 32-byte value, shaped like a curve25519 public key."""
    return b64(secrets.token_bytes(32))


class Ed25519:
    def __init__(self) -> None:
        self._key = SigningKey.generate()
        self.public = b64(bytes(self._key.verify_key))

    def signature(self, obj: dict[str, Any]) -> str:
        data = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        return b64(self._key.sign(encode_canonical_json(data)).signature)

    def sign(self, obj: dict[str, Any], user_id: str, key_id: str) -> dict[str, Any]:
        """A copy of `obj` with this key's signature added under signatures[user_id][key_id]."""
        out = dict(obj)
        sigs = {u: dict(s) for u, s in (obj.get("signatures") or {}).items()}
        sigs.setdefault(user_id, {})[key_id] = self.signature(obj)
        out["signatures"] = sigs
        return out


@dataclass
class DeviceKeys:
    """A device's identity keys, as a client would generate and upload them."""

    user_id: str
    device_id: str
    ed25519: Ed25519 = field(default_factory=Ed25519)
    curve25519: str = field(default_factory=random_key)
    _otk_counter: int = 0

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.device_id}"

    def unsigned(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ALGORITHMS,
            "keys": {f"curve25519:{self.device_id}": self.curve25519, self.key_id: self.ed25519.public},
        }

    def signed(self) -> dict[str, Any]:
        return self.ed25519.sign(self.unsigned(), self.user_id, self.key_id)

    def one_time_keys(self, count: int, *, fallback: bool = False) -> dict[str, Any]:
        keys = {}
        for _ in range(count):
            self._otk_counter += 1
            key: dict[str, Any] = {"key": random_key()}
            if fallback:
                key["fallback"] = True
            keys[f"{OTK_ALG}:AAAA{self._otk_counter:06d}{'F' if fallback else ''}"] = self.ed25519.sign(
                key, self.user_id, self.key_id
            )
        return keys


def new_device_keys(user: User) -> DeviceKeys:
    return DeviceKeys(user.user_id, user.device_id)


@dataclass
class CrossSigning:
    """A user's master, self-signing and user-signing keys."""

    user_id: str
    master: Ed25519 = field(default_factory=Ed25519)
    self_signing: Ed25519 = field(default_factory=Ed25519)
    user_signing: Ed25519 = field(default_factory=Ed25519)

    def key(self, usage: str, signer: Ed25519 | None = None) -> dict[str, Any]:
        ed = getattr(self, usage)
        obj: dict[str, Any] = {
            "user_id": self.user_id,
            "usage": [usage],
            "keys": {f"ed25519:{ed.public}": ed.public},
        }
        if signer is not None:
            obj = signer.sign(obj, self.user_id, f"ed25519:{signer.public}")
        return obj

    def master_key(self) -> dict[str, Any]:
        return self.key("master")

    def self_signing_key(self) -> dict[str, Any]:
        return self.key("self_signing", self.master)

    def user_signing_key(self) -> dict[str, Any]:
        return self.key("user_signing", self.master)

    def upload_body(self) -> dict[str, Any]:
        return {
            "master_key": self.master_key(),
            "self_signing_key": self.self_signing_key(),
            "user_signing_key": self.user_signing_key(),
        }


def upload_keys(user: User, body: dict[str, Any]) -> Any:
    return user.client.post(f"{V3}/keys/upload", body)


def query_keys(user: User, device_keys: dict[str, list[str]]) -> Any:
    return user.client.post(f"{V3}/keys/query", {"device_keys": device_keys})


def claim_keys(user: User, one_time_keys: dict[str, dict[str, str]]) -> Any:
    return user.client.post(f"{V3}/keys/claim", {"one_time_keys": one_time_keys})
