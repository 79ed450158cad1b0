"""bcrypt password hashing (Synapse-compatible hashes), run off the event loop."""

from __future__ import annotations

import asyncio

import bcrypt


class PasswordHasher:
    def __init__(self, rounds: int = 12, pepper: str = "") -> None:
        self.rounds = rounds
        self.pepper = pepper

    async def hash(self, password: str) -> str:
        def work() -> str:
            data = (password + self.pepper).encode()
            return bcrypt.hashpw(data, bcrypt.gensalt(self.rounds)).decode("ascii")

        return await asyncio.get_running_loop().run_in_executor(None, work)

    async def check(self, password: str, stored_hash: str | None) -> bool:
        if not stored_hash:
            return False

        def work() -> bool:
            data = (password + self.pepper).encode()
            try:
                return bcrypt.checkpw(data, stored_hash.encode("ascii"))
            except ValueError:  # not a bcrypt hash
                return False

        return await asyncio.get_running_loop().run_in_executor(None, work)
