"""Reporting content (client-server "Reporting content"): events, rooms and users.

Reports are stored for the server admins (`reports` table; the admin API reads them through
`ReportStore.list_reports`). The rules, with Synapse's choices where the spec leaves room:

- an event report needs the reporter to be joined to the room and able to see the event (history
  visibility); otherwise, and for unknown events, 404 M_NOT_FOUND, so the answer reveals nothing the
  reporter could not read anyway. `reason` is optional, `score` (removed from the spec in v1.18,
  still sent by older clients) must be an integer when present;
- a room report needs no membership (users meet rooms through invites and the directory); 404 for
  rooms this server does not know;
- a user report for a remote or unknown user is accepted and dropped (as Synapse does: it hides
  which users exist); its reason is at most 1000 characters.

All three are rate limited per user by `rc_reports` (declared on the routes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, not_found
from homeserver.events import constants as c
from homeserver.http.requester import Requester
from homeserver.services.visibility import VisibilityService
from homeserver.state.current import CurrentStateCache
from homeserver.storage.stores import reports as kinds
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.reports import ReportStore
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.users import UserStore

logger = logging.getLogger(__name__)

# Synapse's limit on user-report reasons; room and event reasons get a roomier cap.
MAX_USER_REASON = 1000
MAX_REASON = 10_000
# Scores are stored as BIGINT; JSON integers beyond the canonical range are refused.
MAX_SCORE = 2**53 - 1


def _reason(body: Mapping[str, Any], *, required: bool, limit: int) -> str | None:
    if "reason" not in body or body["reason"] is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing param 'reason'")
        return None
    reason = body["reason"]
    if not isinstance(reason, str):
        raise MatrixError(400, "M_BAD_JSON", "Param 'reason' must be a string")
    if len(reason) > limit:
        raise MatrixError(400, "M_BAD_JSON", f"Reason must be at most {limit} characters")
    return reason


def _score(body: Mapping[str, Any]) -> int | None:
    if "score" not in body:
        return None
    score = body["score"]
    if type(score) is not int or abs(score) > MAX_SCORE:
        raise MatrixError(400, "M_BAD_JSON", "Param 'score' must be an integer")
    return score


def _refuse_guests(requester: Requester) -> None:
    if requester.is_guest:
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")


class ReportService:
    def __init__(
        self,
        store: ReportStore,
        events: EventStore,
        rooms: RoomStore,
        state: CurrentStateCache,
        visibility: VisibilityService,
        users: UserStore,
        clock: Any,
        *,
        server_name: str,
    ) -> None:
        self.store = store
        self.events = events
        self.rooms = rooms
        self.state = state
        self.visibility = visibility
        self.users = users
        self.clock = clock
        self.server_name = server_name

    async def report_event(
        self, requester: Requester, room_id: str, event_id: str, body: Mapping[str, Any]
    ) -> int:
        """reportEvent; returns the report id."""
        _refuse_guests(requester)
        reason = _reason(body, required=False, limit=MAX_REASON)
        score = _score(body)
        user_id = requester.user_id
        hidden = not_found("Unable to report event: it does not exist or you aren't able to see it.")
        if not ids.is_valid_room_id(room_id):
            raise hidden
        stored = await self.events.get_event(event_id)
        if stored is None or stored.event.room_id != room_id or stored.outlier:
            raise hidden
        snapshot = await self.state.get(room_id)
        if snapshot is None or snapshot.membership(user_id) != c.JOIN:
            raise hidden
        if not await self.visibility.can_see_event(user_id, stored):
            raise hidden
        report_id = await self.store.insert_report(
            kinds.EVENT,
            user_id,
            received_ts=self.clock.time_ms(),
            room_id=room_id,
            event_id=event_id,
            target_user_id=stored.event.sender,
            reason=reason,
            score=score,
        )
        logger.info("report %d: %s reported event %s in %s", report_id, user_id, event_id, room_id)
        return report_id

    async def report_room(self, requester: Requester, room_id: str, body: Mapping[str, Any]) -> int:
        """reportRoom (v1.13): no membership needed."""
        _refuse_guests(requester)
        reason = _reason(body, required=True, limit=MAX_REASON)
        if not ids.is_valid_room_id(room_id) or await self.rooms.get_room(room_id) is None:
            raise not_found("Room does not exist")
        report_id = await self.store.insert_report(
            kinds.ROOM, requester.user_id, received_ts=self.clock.time_ms(), room_id=room_id, reason=reason
        )
        logger.info("report %d: %s reported room %s", report_id, requester.user_id, room_id)
        return report_id

    async def report_user(self, requester: Requester, target: str, body: Mapping[str, Any]) -> int | None:
        """reportUser (v1.14); None when the report was dropped (remote or unknown user)."""
        _refuse_guests(requester)
        reason = _reason(body, required=True, limit=MAX_USER_REASON)
        if not ids.is_valid_user_id(target):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user id {target!r}")
        if ids.server_of(target) != self.server_name or await self.users.get_user(target) is None:
            return None  # accepted without a trace: the answer must not reveal who exists
        report_id = await self.store.insert_report(
            kinds.USER,
            requester.user_id,
            received_ts=self.clock.time_ms(),
            target_user_id=target,
            reason=reason,
        )
        logger.info("report %d: %s reported user %s", report_id, requester.user_id, target)
        return report_id
