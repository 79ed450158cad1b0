"""Signing JSON and checking signatures (appendices.md "Signing JSON", "Checking for a Signature")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.crypto.canonical import encode_canonical_json

if TYPE_CHECKING:
    from homeserver.crypto.keys import ServerSigningKey


class SignatureError(Exception):
    """A signature is missing, malformed or does not verify."""


def signing_bytes(obj: Mapping[str, Any]) -> bytes:
    """The canonical bytes a signature covers: the object without `signatures` and `unsigned`."""
    if "signatures" in obj or "unsigned" in obj:
        obj = {k: v for k, v in obj.items() if k != "signatures" and k != "unsigned"}
    return encode_canonical_json(obj)


def sign_bytes(data: bytes, key: ServerSigningKey) -> str:
    """Unpadded base64 ed25519 signature of `data`."""
    return encode_base64(key.signing_key.sign(data).signature)


def add_signature(obj: Mapping[str, Any], entity: str, key_id: str, signature: str) -> dict[str, Any]:
    """A copy of `obj` with `signatures[entity][key_id] = signature` (other signatures kept)."""
    out = dict(obj)
    old = obj.get("signatures")
    signatures = {name: dict(sigs) for name, sigs in old.items()} if isinstance(old, Mapping) else {}
    signatures.setdefault(entity, {})[key_id] = signature
    out["signatures"] = signatures
    return out


def sign_json(obj: Mapping[str, Any], server_name: str, key: ServerSigningKey) -> dict[str, Any]:
    """Return a new dict: `obj` plus this server's signature; `unsigned` is kept but not signed."""
    return add_signature(obj, server_name, key.key_id, sign_bytes(signing_bytes(obj), key))


def verify_signature_bytes(data: bytes, signature_b64: Any, verify_key: VerifyKey) -> None:
    """Check an unpadded-base64 ed25519 signature over `data`; raises SignatureError."""
    if not isinstance(signature_b64, str):
        raise SignatureError("Signature is not a string")
    try:
        signature = decode_base64(signature_b64)
    except Exception as exc:  # binascii.Error, UnicodeEncodeError
        raise SignatureError("Signature is not valid base64") from exc
    if len(signature) != 64:
        raise SignatureError("Signature has the wrong length")
    try:
        verify_key.verify(data, signature)
    except BadSignatureError as exc:
        raise SignatureError("Signature does not verify") from exc


def get_signature(obj: Mapping[str, Any], entity: str, key_id: str) -> Any:
    """The signature `obj.signatures[entity][key_id]`; raises SignatureError when absent."""
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        raise SignatureError("No signatures on object")
    by_entity = signatures.get(entity)
    if not isinstance(by_entity, Mapping) or not by_entity:
        raise SignatureError(f"No signatures from {entity}")
    if key_id not in by_entity:
        raise SignatureError(f"No signature from {entity} with key {key_id}")
    return by_entity[key_id]


def verify_json_signature(obj: Mapping[str, Any], entity: str, key_id: str, verify_key: VerifyKey) -> None:
    """Check that `entity` signed `obj` with `key_id`; raises SignatureError."""
    signature = get_signature(obj, entity, key_id)
    verify_signature_bytes(signing_bytes(obj), signature, verify_key)


def verify_ed25519_signature(obj: Mapping[str, Any], signer: str, key_id: str, public_key_b64: str) -> None:
    """Check a signature made with an ed25519 key given as unpadded base64 (device and cross-signing
    keys, where `signer` is a user id and `key_id` is `ed25519:<device id or key>`)."""
    if not key_id.startswith("ed25519:"):
        raise SignatureError(f"Unsupported signing algorithm in {key_id}")
    try:
        key_bytes = decode_base64(public_key_b64)
        verify_key = VerifyKey(key_bytes)
    except Exception as exc:  # bad base64 or wrong length
        raise SignatureError("Invalid ed25519 public key") from exc
    verify_json_signature(obj, signer, key_id, verify_key)
