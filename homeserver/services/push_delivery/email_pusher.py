"""The email pusher: a digest of unread notifications once they have waited unread for
`email.notif_delay` (default 10 minutes), with Synapse's per-room throttle (10 minutes, times 144
for repeated digests, at most a day, reset after 12 quiet hours). Nothing is sent for what the user
read in time: read notifications are no longer unread when the digest falls due."""

from __future__ import annotations

import logging

from homeserver.events import constants as c
from homeserver.services.push_delivery import body, mailer, metrics
from homeserver.services.push_delivery.deps import DeliveryDeps
from homeserver.services.push_delivery.mailer import DigestMessage, DigestRoom
from homeserver.services.push_delivery.worker import PusherWorker
from homeserver.storage.stores.events import StoredEvent
from homeserver.storage.stores.push_actions import PushAction
from homeserver.storage.stores.pushers import Pusher, Throttle

logger = logging.getLogger(__name__)

THROTTLE_START_MS = 10 * 60 * 1000
THROTTLE_MAX_MS = 24 * 60 * 60 * 1000
THROTTLE_MULTIPLIER = 144
THROTTLE_RESET_AFTER_MS = 12 * 60 * 60 * 1000
MAX_NOTIFS = 20  # per digest, the newest (as Synapse)
SMTP_RETRY_MS = 60 * 1000
SMTP_MAX_RETRY_MS = 60 * 60 * 1000


class EmailPusher(PusherWorker):
    kind = "email"

    def __init__(self, pusher: Pusher, deps: DeliveryDeps) -> None:
        super().__init__(pusher, deps)
        self._throttles: dict[str, Throttle] | None = None
        self._retry_ms = SMTP_RETRY_MS

    async def process(self) -> None:
        deps = self.deps
        if self._throttles is None:
            self._throttles = await deps.store.get_throttles(*self.key)
        upto = deps.current_position()
        actions = await deps.actions.unread_for_user_in_range(
            self.pusher.user_id, self.last_stream_ordering, upto, MAX_NOTIFS, newest_first=True
        )
        if not actions:
            # In memory only: a write per member for every message of a busy room is not worth
            # it; after a restart the (index-backed) scan just starts a little earlier.
            self.last_stream_ordering = max(self.last_stream_ordering, upto)
            return
        now = deps.clock.time_ms()
        soonest: int | None = None
        for action in actions:
            ready_at = max(action.received_ts + deps.email.notif_delay, self._room_ready_at(action.room_id))
            if ready_at <= now:
                # One notification is due: the digest carries every pending one.
                if not await self._send(actions):
                    return
                await self._advance(max(a.stream_ordering for a in actions))
                for a in actions:
                    await self._update_throttle(a)
                self.wake()  # there may be more after this batch
                return
            soonest = ready_at if soonest is None else min(soonest, ready_at)
        if soonest is not None:
            self.due_at = soonest
            self.wake()

    def _room_ready_at(self, room_id: str) -> int:
        throttle = (self._throttles or {}).get(room_id)
        return throttle.last_sent_ts + throttle.throttle_ms if throttle is not None else 0

    async def _update_throttle(self, action: PushAction) -> None:
        assert self._throttles is not None
        current = self._throttles.get(action.room_id)
        last_sent = current.last_sent_ts if current is not None else 0
        current_ms = current.throttle_ms if current is not None else 0
        if action.received_ts - last_sent > THROTTLE_RESET_AFTER_MS or current_ms == 0:
            new_ms = THROTTLE_START_MS
        else:
            new_ms = min(current_ms * THROTTLE_MULTIPLIER, THROTTLE_MAX_MS)
        throttle = Throttle(self.deps.clock.time_ms(), new_ms)
        self._throttles[action.room_id] = throttle
        await self.deps.store.set_throttle(*self.key, action.room_id, throttle)

    async def _advance(self, position: int) -> None:
        self.last_stream_ordering = position
        if not await self.deps.store.update_position(*self.key, position, self.deps.clock.time_ms()):
            self.stopped = True

    async def _send(self, actions: list[PushAction]) -> bool:
        """Mail the digest; False when the mail server failed (retried with backoff)."""
        rooms = await self._digest(actions)
        if not rooms:
            return True  # nothing the user may still see
        user_id = self.pusher.user_id
        own = await self.deps.state.get(rooms[0].room_id)
        user_name = body.display_name(own, user_id) or user_id
        message = mailer.build_message(
            self.deps.email, self.pusher.pushkey, user_name, rooms, self.deps.unsubscribe_url(self.pusher)
        )
        try:
            await mailer.send(self.deps.email, message)
        except Exception as exc:  # SMTP errors, refused connections, timeouts, TLS failures
            logger.warning("notification email for %s failed: %s", user_id, type(exc).__name__)
            metrics.pushes_failed.labels(self.kind).inc()
            self.due_at = self.deps.clock.time_ms() + self._retry_ms
            self._retry_ms = min(self._retry_ms * 2, SMTP_MAX_RETRY_MS)
            self.wake()
            return False
        self._retry_ms = SMTP_RETRY_MS
        metrics.pushes_sent.labels(self.kind).inc()
        now = self.deps.clock.time_ms()
        for action in actions:
            metrics.delivery_delay.labels(self.kind).observe(max(0, now - action.received_ts) / 1000)
        return True

    async def _digest(self, actions: list[PushAction]) -> list[DigestRoom]:
        """Notifications grouped by room, the room with the newest first; what the user can no
        longer see (left the room, history visibility) is left out."""
        deps = self.deps
        user_id = self.pusher.user_id
        events = await deps.events.get_events([a.event_id for a in actions])
        by_room: dict[str, list[DigestMessage]] = {}
        names: dict[str, str] = {}
        for action in actions:  # newest first
            stored = events.get(action.event_id)
            if stored is None:
                continue
            snapshot = await deps.state.get(action.room_id)
            membership = snapshot.memberships.get(user_id) if snapshot is not None else None
            if membership not in (c.JOIN, c.INVITE) or not await deps.visibility.can_see_event(
                user_id, stored
            ):
                continue
            if action.room_id not in names:
                names[action.room_id] = (
                    body.room_name(snapshot, user_id, single_member=True) or action.room_id
                )
            sender = body.display_name(snapshot, stored.event.sender) or stored.event.sender
            by_room.setdefault(action.room_id, []).append(
                _message(stored, sender, names[action.room_id], user_id)
            )
        return [DigestRoom(room_id, names[room_id], tuple(msgs)) for room_id, msgs in by_room.items()]


def _message(stored: StoredEvent, sender: str, room_name: str, user_id: str) -> DigestMessage:
    event = stored.event
    ts = event.origin_server_ts
    if event.type == c.MEMBER and event.state_key == user_id and event.content.get("membership") == c.INVITE:
        return DigestMessage(sender, f"{sender} has invited you to join {room_name}", ts, is_invite=True)
    if event.type == "m.room.encrypted":
        return DigestMessage(sender, "Encrypted message", ts)
    content = event.content
    msgtype = content.get("msgtype")
    text = content.get("body")
    if msgtype == "m.image":
        return DigestMessage(sender, "sent an image.", ts)
    if isinstance(text, str) and text:
        return DigestMessage(sender, text if len(text) <= 1000 else text[:1000] + "…", ts)
    return DigestMessage(sender, f"sent an event ({event.type})", ts)
