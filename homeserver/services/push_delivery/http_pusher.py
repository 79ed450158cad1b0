"""The http pusher: POST each notification to the pusher's push gateway, in order, as Synapse's
HttpPusher does (one request per pusher, backoff from 1 s doubling to 1 h, a notification dropped
after failing for 24 h, `rejected` pushkeys removed, badge-only updates after the user reads)."""

from __future__ import annotations

import logging
from typing import Any

from homeserver.core.json import loads
from homeserver.events import constants as c
from homeserver.http.outbound import OutboundError
from homeserver.services.push_delivery import body, metrics
from homeserver.services.push_delivery.deps import DeliveryDeps
from homeserver.services.push_delivery.worker import PusherWorker
from homeserver.storage.stores.push_actions import PushAction
from homeserver.storage.stores.pushers import Pusher

logger = logging.getLogger(__name__)

INITIAL_BACKOFF_MS = 1000
MAX_BACKOFF_MS = 60 * 60 * 1000
GIVE_UP_AFTER_MS = 24 * 60 * 60 * 1000
BATCH = 100
MAX_RESPONSE = 64 * 1024


class Rejected(Exception):
    pass


class HttpPusher(PusherWorker):
    kind = "http"

    def __init__(self, pusher: Pusher, deps: DeliveryDeps) -> None:
        super().__init__(pusher, deps)
        self.url = str(pusher.data.get("url", ""))
        self.backoff_ms = INITIAL_BACKOFF_MS
        self.badge_last_sent: int | None = None  # what the app was last told (None: unknown)
        self._badge_due = False

    def on_receipt(self) -> None:
        self._badge_due = True
        self.wake()

    async def process(self) -> None:
        while not self.stopped:
            upto = self.deps.current_position()
            actions = await self.deps.actions.unread_for_user_in_range(
                self.pusher.user_id, self.last_stream_ordering, upto, BATCH
            )
            for action in actions:
                if not await self._deliver_in_turn(action):
                    return
            if len(actions) < BATCH:
                break
        if self._badge_due and not self.stopped:
            self._badge_due = False
            await self._update_badge()

    async def _deliver_in_turn(self, action: PushAction) -> bool:
        """Deliver one notification; False to stop here (retry later, or the pusher is gone)."""
        clock = self.deps.clock
        try:
            delivered = await self._process_one(action)
        except Rejected:
            return False
        if delivered:
            metrics.delivery_delay.labels(self.kind).observe(
                max(0, clock.time_ms() - action.received_ts) / 1000
            )
            return await self._advance(action.stream_ordering)
        metrics.pushes_failed.labels(self.kind).inc()
        now = clock.time_ms()
        if self.failing_since is None:
            self.failing_since = now
            await self.deps.store.set_failing_since(*self.key, now)
        if now - self.failing_since >= GIVE_UP_AFTER_MS:
            logger.warning(
                "giving up on notification %s for %s after failing for a day",
                action.event_id,
                self.pusher.user_id,
            )
            metrics.pushes_given_up.labels(self.kind).inc()
            return await self._advance(action.stream_ordering)
        self.due_at = now + self.backoff_ms
        self.backoff_ms = min(self.backoff_ms * 2, MAX_BACKOFF_MS)
        self.wake()  # try again at due_at
        return False

    async def _advance(self, position: int) -> bool:
        self.last_stream_ordering = position
        self.failing_since = None
        self.backoff_ms = INITIAL_BACKOFF_MS
        if not await self.deps.store.update_position(*self.key, position, self.deps.clock.time_ms()):
            self.stopped = True  # deleted meanwhile
            return False
        return True

    async def _process_one(self, action: PushAction) -> bool:
        """True when handled (sent, or nothing to send); False to retry."""
        if "notify" not in action.actions:
            return True
        user_id = self.pusher.user_id
        stored = await self.deps.events.get_event(action.event_id)
        if stored is None:
            return True  # purged meanwhile
        snapshot = await self.deps.state.get(action.room_id)
        membership = snapshot.memberships.get(user_id) if snapshot is not None else None
        # A user who left (or was kicked) since gets nothing more from that room, nor anything
        # history visibility hides from them.
        if membership not in (c.JOIN, c.INVITE) or not await self.deps.visibility.can_see_event(
            user_id, stored
        ):
            return True
        badge = await self._badge()
        notification = body.event_notification(
            self.pusher,
            stored.event,
            action.actions,
            badge,
            snapshot,
            include_content=self.deps.push.include_content,
        )
        rejected = await self._post(notification)
        if rejected is None:
            return False
        metrics.http_pushes_processed.inc()
        metrics.pushes_sent.labels(self.kind).inc()
        if not rejected:
            self.badge_last_sent = badge
        await self._handle_rejected(rejected)
        return True

    async def _badge(self) -> int:
        return await self.deps.actions.badge_count(
            self.pusher.user_id, group_by_room=self.deps.push.group_unread_count_by_room
        )

    async def _update_badge(self) -> None:
        badge = await self._badge()
        if self.badge_last_sent == badge:
            return
        self.badge_last_sent = badge
        if await self._post(body.badge_notification(self.pusher, badge)) is None:
            metrics.badge_updates_failed.inc()
        else:
            metrics.badge_updates_processed.inc()

    async def _post(self, notification: dict[str, Any]) -> list[str] | None:
        """The gateway's `rejected` list, or None when the request failed (retry)."""
        try:
            result = await self.deps.http.post_json(
                self.url, notification, max_size=MAX_RESPONSE, time_limit=self.deps.push.gateway_timeout
            )
        except OutboundError as exc:
            logger.warning("push to %s for %s failed: %s", self.url, self.pusher.user_id, exc.reason)
            metrics.http_pushes_failed.inc()
            return None
        if not 200 <= result.status < 300:
            logger.warning("push gateway %s answered %d for %s", self.url, result.status, self.pusher.user_id)
            metrics.http_pushes_failed.inc()
            return None
        try:
            answer = loads(result.body) if result.body else {}
        except ValueError:
            answer = {}
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        return [r for r in rejected if isinstance(r, str)] if isinstance(rejected, list) else []

    async def _handle_rejected(self, rejected: list[str]) -> None:
        for pushkey in rejected:
            if pushkey != self.pusher.pushkey:
                logger.warning(
                    "ignoring a rejected pushkey we did not send (pusher of %s)", self.pusher.user_id
                )
                continue
            logger.info("push gateway rejected the pushkey of %s's pusher: removing it", self.pusher.user_id)
            metrics.pushers_removed.inc()
            self.stopped = True
            await self.deps.remove_pusher(*self.key)
            raise Rejected
