"""Where the verify keys of other servers come from.

Checking an X-Matrix request (and later, signed events) needs the origin's public key for a key id
that is still valid at a given time. The federation layer will fetch keys from remote servers and
notaries (`/_matrix/key/v2/...`) and cache them; until then `InMemoryKeyring` holds keys put into
it explicitly (tests, and this server's own key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nacl.signing import VerifyKey


@dataclass(frozen=True, slots=True)
class ServerVerifyKey:
    server_name: str
    key_id: str  # "ed25519:abc"
    verify_key: VerifyKey
    valid_until_ts: int  # ms; the key may verify signatures made up to this time


class Keyring(Protocol):
    async def get_verify_key(self, server_name: str, key_id: str, *, valid_at_ts: int) -> VerifyKey | None:
        """The key `key_id` of `server_name` if known and valid at `valid_at_ts`, else None."""
        ...


class InMemoryKeyring:
    """A keyring that knows only the keys it was given."""

    def __init__(self, keys: tuple[ServerVerifyKey, ...] = ()) -> None:
        self._keys: dict[tuple[str, str], ServerVerifyKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: ServerVerifyKey) -> None:
        self._keys[(key.server_name, key.key_id)] = key

    async def get_verify_key(self, server_name: str, key_id: str, *, valid_at_ts: int) -> VerifyKey | None:
        key = self._keys.get((server_name, key_id))
        if key is None or key.valid_until_ts < valid_at_ts:
            return None
        return key.verify_key


class DelegatingKeyring:
    """A keyring that asks whichever keyring `current()` returns at call time (the services'
    keyring attribute, which tests replace after start-up)."""

    def __init__(self, current: Callable[[], Keyring]) -> None:
        self._current = current

    async def get_verify_key(self, server_name: str, key_id: str, *, valid_at_ts: int) -> VerifyKey | None:
        return await self._current().get_verify_key(server_name, key_id, valid_at_ts=valid_at_ts)
