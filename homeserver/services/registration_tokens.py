"""Registration tokens (MSC3231): the `m.login.registration_token` UIA stage, the validity check,
and counting a completed registration against its token inside the registration transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.storage.database import Connection
from homeserver.storage.stores.misc import RegistrationToken, RegistrationTokenStore


def _invalid() -> MatrixError:
    return MatrixError(401, "M_FORBIDDEN", "Invalid registration token")


class RegistrationTokenService:
    def __init__(self, store: RegistrationTokenStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def _usable(self, found: RegistrationToken | None) -> bool:
        now = self.clock.time_ms()
        return (
            found is not None
            and (found.expiry_time is None or found.expiry_time >= now)
            and (found.uses_allowed is None or found.completed < found.uses_allowed)
        )

    async def is_valid(self, token: str) -> bool:
        return self._usable(await self.store.get_token(token))

    async def check_stage(self, auth: dict[str, Any], _user: str | None) -> str:
        """The UIA stage: the token when usable (remembered as the stage's result)."""
        token = auth.get("token")
        if not isinstance(token, str):
            raise MatrixError(400, "M_MISSING_PARAM", "Missing registration token")
        if not await self.is_valid(token):
            raise _invalid()
        return token

    def consumer(self, token: object) -> Callable[[Connection], Awaitable[None]] | None:
        """What registration runs in its transaction to use up `token` (None: no token stage)."""
        if not isinstance(token, str):
            return None

        async def consume(conn: Connection) -> None:
            if not await self.store.use_token_txn(conn, token, self.clock.time_ms()):
                raise _invalid()

        return consume
