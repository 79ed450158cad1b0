"""Pushers: where a user's notifications go (push gateways, email). Delivery is
services/push_delivery's; this service stores pushers and tells it of every change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.services.push_delivery.unsubscribe import UnsubscribeTokens
from homeserver.storage.stores.pushers import Pusher, PusherStore

EMAIL_APP_ID = "m.email"  # the app id Synapse gives the email pushers it creates
# (user_id, app_id, pushkey) after a pusher was added, replaced or removed
ChangeHook = Callable[[str, str, str], Awaitable[None]]


class PusherService:
    def __init__(
        self, store: PusherStore, clock: Clock, current_position: Callable[[], int] = lambda: 0
    ) -> None:
        self.store = store
        self.clock = clock
        # The events stream position now: a new pusher delivers only what comes after it.
        self.current_position = current_position
        self.changed_hooks: list[ChangeHook] = []
        self.unsubscribe_tokens: UnsubscribeTokens | None = None  # set when email delivery is wired

    async def unsubscribe(self, token: str) -> None:
        """The link in a notification email: remove the email pusher it names (no login)."""
        key = self.unsubscribe_tokens.parse(token) if self.unsubscribe_tokens is not None else None
        if key is None:
            raise MatrixError(400, "M_UNKNOWN", "Invalid or expired unsubscribe link")
        await self.delete(*key)

    async def list_for_user(self, user_id: str) -> list[Pusher]:
        return await self.store.list_for_user(user_id)

    async def set_pusher(self, *, append: bool, **fields: Any) -> None:
        pusher = Pusher(**fields)
        if pusher.kind == "email":
            # As Synapse: only to an address the account owns (a validated email 3pid).
            owner = await self.store.threepid_owner("email", pusher.pushkey.strip().lower())
            if owner != pusher.user_id:
                raise MatrixError(400, "M_THREEPID_NOT_FOUND", "Email not found")
        await self.store.upsert(pusher, self.clock.time_ms(), append=append, position=self.current_position())
        await self._changed(pusher.user_id, pusher.app_id, pusher.pushkey)

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> None:
        if await self.store.delete(user_id, app_id, pushkey):
            await self._changed(user_id, app_id, pushkey)

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        for pusher in await self.store.delete_for_devices(user_id, device_ids):
            await self._changed(*pusher.key)

    async def remove_all(self, user_id: str) -> None:
        """A deactivated account gets no more notifications (as Synapse)."""
        for pusher in await self.store.list_for_user(user_id):
            await self.delete(*pusher.key)

    async def on_emails_changed(self, user_id: str, emails: list[str], *, add_pushers: bool) -> None:
        """The account's email addresses were replaced: email pushers for addresses it no longer
        has go; with `add_pushers` (email.notif_for_new_users) new addresses get one."""
        current = {p.pushkey: p for p in await self.store.list_for_user(user_id) if p.kind == "email"}
        wanted = {e.lower() for e in emails}
        for pushkey, pusher in current.items():
            if pushkey.lower() not in wanted:
                await self.delete(*pusher.key)
        if not add_pushers:
            return
        for address in sorted(wanted - {k.lower() for k in current}):
            await self.set_pusher(
                append=True,
                user_id=user_id,
                app_id=EMAIL_APP_ID,
                pushkey=address,
                kind="email",
                app_display_name="Email Notifications",
                device_display_name=address,
                profile_tag=None,
                lang="en",
                data={},
                device_id=None,
            )

    async def _changed(self, user_id: str, app_id: str, pushkey: str) -> None:
        for hook in self.changed_hooks:
            await hook(user_id, app_id, pushkey)
