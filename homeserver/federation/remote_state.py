"""Checking the room state and auth chain another server hands us (send_join response).

Every PDU goes through `pdu_checks.check_pdu` (format, signatures, content hash); events of
another room or failing those checks are dropped. The rest is authorised in auth-chain order,
each against its own auth events: an event whose auth events are missing or rejected, or that
fails the rules, is dropped from the state (Synapse rejects it). What remains is the state the
join is persisted with and the outliers stored before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.crypto.keyring import Keyring
from homeserver.events import constants as c
from homeserver.events.auth import AuthError
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.federation.pdu_checks import check_pdu
from homeserver.federation.room_events import auth_against

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]

# A large room's state is thousands of events: let other tasks run between batches of checks.
YIELD_EVERY = 200


@dataclass(frozen=True, slots=True)
class RemoteState:
    # Accepted events (state and auth chain) in auth order: auth events before the events they
    # authorise.
    events: list[Event]
    # The room state: (type, state_key) -> event id, of accepted events only.
    state: dict[StateKey, str]

    def state_events(self) -> dict[StateKey, Event]:
        by_id = {e.event_id: e for e in self.events}
        return {k: by_id[v] for k, v in self.state.items()}


def _bad(msg: str) -> MatrixError:
    return MatrixError(502, "M_UNKNOWN", f"The resident server sent an unusable room state: {msg}")


async def verify_remote_state(
    version: RoomVersion,
    room_id: str,
    state_pdus: Any,
    auth_pdus: Any,
    keyring: Keyring,
) -> RemoteState:
    if not isinstance(state_pdus, list) or not isinstance(auth_pdus, list):
        raise _bad("state and auth_chain must be lists")
    checked: dict[str, Event] = {}
    state_ids: set[str] = set()
    for n, (pdu, in_state) in enumerate([*((p, False) for p in auth_pdus), *((p, True) for p in state_pdus)]):
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        if not isinstance(pdu, Mapping):
            continue
        try:
            event = await check_pdu(pdu, version, keyring)
        except MatrixError as exc:
            logger.info("dropping an event of the state of %s: %s", room_id, exc.error)
            continue
        if event.room_id != room_id:
            continue
        checked[event.event_id] = event
        if in_state and event.state_key is not None:
            state_ids.add(event.event_id)

    creates = [e for e in checked.values() if e.type == c.CREATE and e.state_key == ""]
    if len(creates) != 1:
        raise _bad("no single m.room.create event")
    create = creates[0]
    accepted: dict[str, Event] = {}
    for n, event in enumerate(_auth_order(checked)):
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        auth_events = [accepted[a] for a in event.auth_event_ids if a in accepted]
        if len(auth_events) != len(event.auth_event_ids) and event.type != c.CREATE:
            logger.info("rejecting %s in %s: missing or rejected auth events", event.event_id, room_id)
            continue
        try:
            auth_against(version, event, auth_events, create_event=create)
        except AuthError as exc:
            logger.info("rejecting %s in %s: %s", event.event_id, room_id, exc.reason)
            continue
        accepted[event.event_id] = event
    if create.event_id not in accepted:
        raise _bad("the m.room.create event is not valid")
    state: dict[StateKey, str] = {}
    for event_id in state_ids:
        found = accepted.get(event_id)
        if found is None:
            continue
        key = (found.type, found.state_key or "")
        other = state.get(key)
        if other is not None and other != event_id:
            raise _bad(f"two events for the state key {key}")
        state[key] = event_id
    if (c.CREATE, "") not in state:
        raise _bad("the state has no m.room.create event")
    return RemoteState(list(accepted.values()), state)


def _auth_order(events: Mapping[str, Event]) -> list[Event]:
    """Events with their auth events (among `events`) first; ties by (depth, event id). A cycle
    (only a forged chain has one) is broken arbitrarily: its events then fail their auth check."""
    ordered: list[Event] = []
    done: set[str] = set()
    entered: set[str] = set()
    for start in sorted(events.values(), key=lambda e: (e.depth, e.event_id)):
        stack: list[tuple[Event, bool]] = [(start, False)]
        while stack:
            event, expanded = stack.pop()
            if expanded:
                done.add(event.event_id)
                ordered.append(event)
                continue
            if event.event_id in entered:
                continue
            entered.add(event.event_id)
            stack.append((event, True))
            for auth_id in reversed(event.auth_event_ids):
                auth = events.get(auth_id)
                if auth is not None and auth_id not in entered:
                    stack.append((auth, False))
    return ordered
