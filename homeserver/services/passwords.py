"""bcrypt password hashing (Synapse-compatible hashes), run off the event loop."""

from __future__ import annotations

import asyncio

import bcrypt

# bcrypt only ever looked at the first 72 bytes of its input; bcrypt >= 5 raises instead of
# truncating. Like Synapse, we truncate the UTF-8 bytes of password + pepper ourselves, which keeps
# every hash made before (by us or by Synapse, whose users may migrate here) valid: a 25-syllable
# Korean password (75 bytes) hashes and checks exactly as older bcrypt versions did.
BCRYPT_MAX_BYTES = 72


def _secret(password: str, pepper: str) -> bytes:
    return (password + pepper).encode("utf-8")[:BCRYPT_MAX_BYTES]


class PasswordHasher:
    def __init__(self, rounds: int = 12, pepper: str = "") -> None:
        self.rounds = rounds
        self.pepper = pepper

    async def hash(self, password: str) -> str:
        def work() -> str:
            return bcrypt.hashpw(_secret(password, self.pepper), bcrypt.gensalt(self.rounds)).decode("ascii")

        return await asyncio.get_running_loop().run_in_executor(None, work)

    async def check(self, password: str, stored_hash: str | None) -> bool:
        if not stored_hash:
            return False

        def work() -> bool:
            try:
                return bcrypt.checkpw(_secret(password, self.pepper), stored_hash.encode("ascii"))
            except ValueError:  # not a bcrypt hash
                return False

        return await asyncio.get_running_loop().run_in_executor(None, work)
