"""The composition root: builds every store and service explicitly from the config.

No global service locator: handlers reach services through `ApiRequest.services`, services get
their collaborators through their constructors.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.core.clock import Clock
from homeserver.http.ratelimit import Bucket, RateLimiter
from homeserver.http.requester import Requester
from homeserver.services.accounts import AccountService, TokenSettings
from homeserver.services.auth import AuthService
from homeserver.services.passwords import PasswordHasher
from homeserver.services.profiles import ProfileService
from homeserver.services.uia import UiaService
from homeserver.storage.database import Database
from homeserver.storage.engine import open_database
from homeserver.storage.migrations import migrate, pending
from homeserver.storage.stores.devices import DeviceStore
from homeserver.storage.stores.misc import FilterStore, NonceStore, RegistrationTokenStore, UiaStore
from homeserver.storage.stores.users import UserStore

logger = logging.getLogger(__name__)


def bucket(limit: Any) -> Bucket:
    return Bucket(float(limit.per_second), float(limit.burst_count))


class Services:
    """Everything a process needs, wired together. Build with `await Services.create(...)`."""

    def __init__(self, config: Any, db: Database, clock: Clock, role: str = "main") -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.role = role
        self.ratelimiter = RateLimiter(clock)

        # stores
        self.users = UserStore(db)
        self.device_store = DeviceStore(db)
        self.uia_store = UiaStore(db)
        self.registration_tokens = RegistrationTokenStore(db)
        self.filters = FilterStore(db)
        self.nonces = NonceStore(db)

        # services
        self.auth = AuthService(self.device_store, clock)
        self.uia = UiaService(self.uia_store, clock)
        self.profiles = ProfileService(self.users)
        self.hasher = PasswordHasher(rounds=int(getattr(config, "bcrypt_rounds", 12) or 12))
        self.accounts = AccountService(
            db,
            self.users,
            self.device_store,
            self.auth,
            self.hasher,
            clock,
            self.ratelimiter,
            server_name=config.server_name,
            tokens=TokenSettings(
                access_lifetime=config.refreshable_access_token_lifetime,
                refresh_lifetime=getattr(config, "refresh_token_lifetime", None),
                session_lifetime=getattr(config, "session_lifetime", None),
            ),
            rc_login_account=bucket(config.rc_login.account),
            rc_login_failed=bucket(config.rc_login.failed_attempts),
        )

    @classmethod
    async def create(cls, config: Any, *, clock: Clock | None = None, role: str = "main") -> Services:
        db = await open_database(config.database)
        try:
            if role == "main":
                applied = await migrate(db)
                if applied:
                    logger.info("applied %d migration(s)", len(applied))
            elif await pending(db):
                raise RuntimeError("database schema is outdated: run `homeserver migrate` first")
            services = cls(config, db, clock or Clock(), role)
            await services.start()
            return services
        except BaseException:
            await db.close()
            raise

    async def start(self) -> None:
        """Load in-memory state (stream positions, caches) once the schema is current."""

    async def stop(self) -> None:
        await self.db.close()

    # -- route-declared rate limits ------------------------------------------------------------

    def check_route_ratelimit(self, name: str, client_ip: str, requester: Requester | None) -> None:
        config = self.config
        if name == "login":
            self.ratelimiter.check("login_address", client_ip, bucket(config.rc_login.address))
        elif name == "registration":
            self.ratelimiter.check("registration", client_ip, bucket(config.rc_registration))
        elif name == "message" and requester is not None and requester.app_service_id is None:
            self.ratelimiter.check("message", requester.user_id, bucket(config.rc_message))
