"""Per-user restrictions an admin sets: shadow-ban, suspension and rate-limit overrides.

- A *suspended* user can still sync and read, but sending events, changing state, redacting,
  inviting, joining, knocking and creating rooms fail with 403 `M_USER_SUSPENDED` (the spec's
  account suspension, Synapse's `PUT /_synapse/admin/v1/suspend`).
- A *shadow-banned* user's sends, state changes, redactions and invites answer as if they worked
  (with a made-up event id) but nothing is stored or delivered, as Synapse does: the user sees no
  sign of the ban for as long as possible.
- A rate-limit override replaces `rc_message` for one user (0 messages per second: no limit).

Flags are cached in memory (one row per active user) and dropped when an admin changes them in this
process; overrides are few and all held in memory.
"""

from __future__ import annotations

from collections import OrderedDict

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.ratelimit import Bucket
from homeserver.storage.stores.admin_users import AdminUserStore, RatelimitOverride


def suspended_error() -> MatrixError:
    return MatrixError(403, "M_USER_SUSPENDED", "Your account has been suspended by a server admin")


def fake_event_id() -> str:
    return "$" + ids.random_string(43)


class UserRestrictions:
    CACHE_SIZE = 50_000

    def __init__(self, store: AdminUserStore) -> None:
        self.store = store
        self._flags: OrderedDict[str, tuple[bool, bool]] = OrderedDict()
        self._overrides: dict[str, RatelimitOverride] = {}

    async def load(self) -> None:
        self._overrides = await self.store.list_ratelimit_overrides()

    async def _get(self, user_id: str) -> tuple[bool, bool]:
        """(shadow_banned, suspended)."""
        flags = self._flags.get(user_id)
        if flags is None:
            flags = await self.store.get_restrictions(user_id)
            self._flags[user_id] = flags
            if len(self._flags) > self.CACHE_SIZE:
                self._flags.popitem(last=False)
        return flags

    def invalidate(self, user_id: str) -> None:
        self._flags.pop(user_id, None)

    async def check_not_suspended(self, user_id: str) -> None:
        if (await self._get(user_id))[1]:
            raise suspended_error()

    async def is_shadow_banned(self, user_id: str) -> bool:
        return (await self._get(user_id))[0]

    async def gate_send(self, user_id: str) -> bool:
        """Before a user sends: raise for a suspended user; True when the send must be faked."""
        shadow_banned, suspended = await self._get(user_id)
        if suspended:
            raise suspended_error()
        return shadow_banned

    # -- rate limits ---------------------------------------------------------------------------

    def get_override(self, user_id: str) -> RatelimitOverride | None:
        return self._overrides.get(user_id)

    def set_override(self, user_id: str, override: RatelimitOverride | None) -> None:
        if override is None:
            self._overrides.pop(user_id, None)
        else:
            self._overrides[user_id] = override

    def message_bucket(self, user_id: str, default: Bucket) -> Bucket:
        override = self._overrides.get(user_id)
        if override is None:
            return default
        return Bucket(float(override.messages_per_second), float(override.burst_count))
