"""Turns an access token (a user's, or an appservice's `as_token`) into a Requester.

Every authenticated request hits this, so a valid token costs one dict lookup after the first use.
Logout, device deletion and deactivation invalidate the cached entries (and, in scale-out, the
replication layer forwards those invalidations to other processes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from homeserver.appservice.registry import ApplicationService, AppServiceRegistry, masquerade_target
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, unknown_token
from homeserver.http.requester import Requester
from homeserver.metrics.caches import register_cache
from homeserver.services.tokens import token_hash
from homeserver.storage.stores.devices import DeviceStore
from homeserver.storage.stores.users import UserStore


class AuthService:
    CACHE_SIZE = 50_000

    def __init__(
        self, devices: DeviceStore, users: UserStore, appservices: AppServiceRegistry, clock: Clock
    ) -> None:
        self.devices = devices
        self.users = users
        self.appservices = appservices
        self.clock = clock
        self._cache: OrderedDict[str, tuple[Requester, int | None]] = OrderedDict()
        # Told after tokens were revoked (by hash) or a user's tokens changed (by user id), so live
        # connections (WebSocket sync) re-check their token at once instead of at the next request.
        self.token_listeners: list[Callable[[list[str]], None]] = []
        self.user_listeners: list[Callable[[str], None]] = []
        self._metric = register_cache(
            "get_user_by_access_token", self, lambda s: len(s._cache), self.CACHE_SIZE
        )
        # Told of every invalidation (scale-out: other processes drop the same entries).
        self.invalidated_hooks: list[Callable[[list[str] | None, str | None], None]] = []

    async def get_requester_for_token(
        self, access_token: str, masquerade_as: str | None, device_id: str | None = None
    ) -> Requester:
        """An appservice's `as_token` (acting as `masquerade_as`, the `?user_id=` parameter, and
        `device_id`, the `?device_id=` parameter, when given) or else a user's access token (where
        both parameters mean nothing, as in Synapse)."""
        service = self.appservices.get_by_token(access_token)
        if service is not None:
            return await self.get_appservice_requester(service, masquerade_as, device_id)
        return await self.get_requester(access_token)

    async def get_appservice_requester(
        self, service: ApplicationService, user_id: str | None, device_id: str | None = None
    ) -> Requester:
        target = masquerade_target(service, user_id)
        user = await self.users.get_user(target)
        if user is None and target != service.sender:
            # Synapse lets an appservice act only as users that exist (its sender always does).
            raise MatrixError(
                403, "M_FORBIDDEN", f"Application service has not registered this user ({target})"
            )
        if device_id is not None and await self.devices.get_device(target, device_id) is None:
            # Spec v1.17 (device masquerading): the device must belong to the user acted as.
            raise MatrixError(400, "M_UNKNOWN_DEVICE", f"Device {device_id} does not belong to {target}")
        return Requester(
            user_id=target,
            device_id=device_id,
            token_hash=None,
            is_admin=user is not None and user.is_admin,
            is_guest=False,
            app_service_id=service.id,
        )

    async def get_requester(self, access_token: str) -> Requester:
        digest = token_hash(access_token)
        cached = self._cache.get(digest)
        if cached is None:
            self._metric.misses += 1
            row = await self.devices.get_access_token(digest)
            if row is None:
                raise unknown_token()
            if row.deactivated:
                raise unknown_token("This account has been deactivated")
            if row.locked:
                # Synapse's account locking: the client should log out softly and show why.
                raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
            requester = Requester(
                user_id=row.user_id,
                device_id=row.device_id,
                token_hash=digest,
                is_admin=row.is_admin,
                is_guest=row.is_guest,
                app_service_id=row.appservice_id,
            )
            if row.refresh_token_hash is not None:
                # First use of a refreshed access token retires the refresh token it replaced.
                await self.devices.retire_previous_refresh_token(row.refresh_token_hash)
            cached = (requester, row.valid_until_ts)
            self._cache[digest] = cached
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
                self._metric.evicted_size += 1
        else:
            self._metric.hits += 1
        requester, valid_until = cached
        if valid_until is not None and valid_until <= self.clock.time_ms():
            # Refreshable token expired: the client should refresh, not log the user out.
            raise unknown_token("Access token has expired", soft_logout=True)
        return requester

    def expires_at_ms(self, access_token: str) -> int | None:
        """When a token checked a moment ago stops working (refreshable tokens), else None."""
        cached = self._cache.get(token_hash(access_token))
        return cached[1] if cached is not None else None

    def require_admin(self, requester: Requester) -> None:
        if not requester.is_admin:
            raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")

    def invalidate(self, token_hashes: list[str], *, replicated: bool = False) -> None:
        for digest in token_hashes:
            self._cache.pop(digest, None)
        for listener in self.token_listeners:
            listener(token_hashes)
        if not replicated:
            for hook in self.invalidated_hooks:
                hook(token_hashes, None)

    def invalidate_user(self, user_id: str, *, replicated: bool = False) -> None:
        for digest in [d for d, (r, _) in self._cache.items() if r.user_id == user_id]:
            del self._cache[digest]
        for listener in self.user_listeners:
            listener(user_id)
        if not replicated:
            for hook in self.invalidated_hooks:
                hook(None, user_id)
