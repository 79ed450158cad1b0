"""Building a local event into an `EventContext`: the builder plus the auth rules, no I/O.

The persister calls this inside its writer loop with the room's latest snapshot (its working copy
within the batch), so prev_events are the forward extremities and the auth events come from the
current state. Federation builds contexts for received events elsewhere; both go through the same
`EventPersister._apply`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeserver.crypto.keys import ServerSigningKey
from homeserver.events.auth import auth_types_for_event, check_auth_rules, with_create_event
from homeserver.events.builder import build_event
from homeserver.events.context import EventContext, EventKind, StateIds
from homeserver.events.validation import validate_pdu_size_and_fields
from homeserver.state.current import RoomSnapshot


@dataclass(slots=True)
class EventDraft:
    """A local event to create. `txn` = (user_id, device_id, txn_id) for idempotent sends."""

    room_id: str
    type: str
    sender: str
    content: dict[str, Any]
    state_key: str | None = None
    redacts: str | None = None
    txn: tuple[str, str, str] | None = None
    unsigned_extra: dict[str, Any] | None = None
    # Extra check run against the room snapshot just before building (e.g. "must still be joined").
    precondition: Callable[[RoomSnapshot], None] | None = None
    # An appservice's `?ts=` (timestamp massaging); None: now.
    origin_server_ts: int | None = None


def build_local_context(
    draft: EventDraft,
    snapshot: RoomSnapshot,
    *,
    origin_server_ts: int,
    server_name: str,
    signing_key: ServerSigningKey,
) -> EventContext:
    """Build, sign and authorise `draft` on top of `snapshot`; raises MatrixError if refused."""
    if draft.precondition is not None:
        draft.precondition(snapshot)
    version = snapshot.version
    auth_keys = auth_types_for_event(
        version, type=draft.type, sender=draft.sender, state_key=draft.state_key, content=draft.content
    )
    auth_state = {k: snapshot.state[k] for k in auth_keys if k in snapshot.state}
    event = build_event(
        version,
        room_id=draft.room_id,
        sender=draft.sender,
        type=draft.type,
        content=draft.content,
        state_key=draft.state_key,
        prev_event_ids=list(snapshot.extremities),
        auth_event_ids=[e.event_id for e in auth_state.values()],
        depth=snapshot.depth + 1,
        origin_server_ts=origin_server_ts,
        server_name=server_name,
        signing_key=signing_key,
        redacts=draft.redacts,
        unsigned_extra=draft.unsigned_extra,
    )
    validate_pdu_size_and_fields(event.pdu)
    # v12+: the create event is not an auth event, but the rules still read it.
    check_auth_rules(version, event, with_create_event(auth_state, snapshot.state))
    return EventContext(
        event,
        EventKind.LOCAL_NEW,
        StateIds(snapshot.state),
        state_group_before=snapshot.state_group,
        txn=draft.txn,
    )
