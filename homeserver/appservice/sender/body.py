"""The JSON of `PUT /_matrix/app/v1/transactions/{txnId}`, from a stored transaction.

A stored transaction keeps event ids, not events: they are serialised when sent (and again on
each retry), in the client format with `unsigned.age` from now, redactions applied, and invites
with their `invite_room_state`, plus the legacy v1 copies at the top level (`user_id`, `age`,
`prev_content` ...; see `with_v1_fields`), as Synapse. The other parts are stored as sent. Keys, as Synapse
1.13x sends them:

- `events`: always;
- `ephemeral` when the registration says `receive_ephemeral`, `de.sorunome.msc2409.ephemeral`
  when it says `de.sorunome.msc2409.push_ephemeral` (both when both);
- `de.sorunome.msc2409.to_device` (MSC2409/MSC4203) for those and for `push_to_device`;
- with `org.matrix.msc3202: true`, when not empty: `org.matrix.msc3202.device_lists`
  (`changed`, `left`), and, computed when sent, the one-time key counts
  (`org.matrix.msc3202.device_one_time_key_counts` and its misspelt twin `..._keys_count`, both
  as Synapse) and `org.matrix.msc3202.device_unused_fallback_key_types` of the appservice's
  users concerned: its sender, its users joined to the rooms in the transaction, and the
  recipients of its to-device messages.
"""

from __future__ import annotations

from typing import Any

from homeserver.appservice.registry import ApplicationService
from homeserver.events import constants as c
from homeserver.services.serialize import EventSerializer
from homeserver.state.current import CurrentStateCache
from homeserver.storage.stores.appservice_txns import AppServiceTxnStore
from homeserver.storage.stores.events import EventStore

EVENTS = "events"
EPHEMERAL = "ephemeral"
TO_DEVICE = "to_device"
DEVICE_LISTS = "device_lists"

# Synapse serialises appservice events in the legacy v1 client format (`format_event_for_client_v1`):
# `user_id` repeats `sender` and these `unsigned` keys are copied to the top level. Older bridges
# read them there (`event.user_id`, `event.age`, `event.prev_content`).
V1_COPIED_UNSIGNED = (
    "age",
    "redacted_because",
    "replaces_state",
    "prev_content",
    "invite_room_state",
    "knock_room_state",
)


def with_v1_fields(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event)
    if "sender" in out:
        out["user_id"] = out["sender"]
    unsigned = out.get("unsigned")
    if isinstance(unsigned, dict):
        for key in V1_COPIED_UNSIGNED:
            if key in unsigned:
                out[key] = unsigned[key]
    return out


def stored_content(
    event_ids: list[str],
    ephemeral: list[dict[str, Any]],
    to_device: list[dict[str, Any]],
    device_lists: dict[str, list[str]] | None,
) -> dict[str, Any]:
    content: dict[str, Any] = {EVENTS: event_ids}
    if ephemeral:
        content[EPHEMERAL] = ephemeral
    if to_device:
        content[TO_DEVICE] = to_device
    if device_lists:
        content[DEVICE_LISTS] = device_lists
    return content


class TransactionBodies:
    def __init__(
        self,
        events: EventStore,
        serializer: EventSerializer,
        state: CurrentStateCache,
        store: AppServiceTxnStore,
        *,
        server_name: str,
    ) -> None:
        self.events = events
        self.serializer = serializer
        self.state = state
        self.store = store
        self.local_suffix = ":" + server_name

    async def body(self, service: ApplicationService, content: dict[str, Any]) -> dict[str, Any]:
        event_ids: list[str] = list(content.get(EVENTS, []))
        found = await self.events.get_events(event_ids) if event_ids else {}
        # An event purged since the transaction was built (retention, room deletion) is left out.
        stored = [found[e] for e in event_ids if e in found]
        body: dict[str, Any] = {
            "events": [
                with_v1_fields(e) for e in await self.serializer.serialize(stored, stripped_state=True)
            ],
        }
        ephemeral = list(content.get(EPHEMERAL, []))
        if service.receive_ephemeral:
            body["ephemeral"] = ephemeral
        if service.unstable_ephemeral:
            body["de.sorunome.msc2409.ephemeral"] = ephemeral
        if service.wants_to_device:
            body["de.sorunome.msc2409.to_device"] = list(content.get(TO_DEVICE, []))
        if service.msc3202:
            device_lists = content.get(DEVICE_LISTS)
            if device_lists:
                body["org.matrix.msc3202.device_lists"] = {
                    "changed": list(device_lists.get("changed", [])),
                    "left": list(device_lists.get("left", [])),
                }
            await self._add_key_counts(service, body, ephemeral, content.get(TO_DEVICE, []))
        return body

    async def _add_key_counts(
        self,
        service: ApplicationService,
        body: dict[str, Any],
        ephemeral: list[dict[str, Any]],
        to_device: list[dict[str, Any]],
    ) -> None:
        users = {service.sender}
        room_ids = {e["room_id"] for e in body["events"]}
        room_ids.update(e["room_id"] for e in ephemeral if isinstance(e.get("room_id"), str))
        for room_id in sorted(room_ids):
            snapshot = await self.state.get(room_id)
            if snapshot is not None:
                users.update(
                    u
                    for u in snapshot.members_with(c.JOIN)
                    if u.endswith(self.local_suffix) and service.is_interested_in_user(u)
                )
        users.update(m["to_user_id"] for m in to_device)
        counts, fallback = await self.store.key_counts(sorted(users))
        if counts:
            body["org.matrix.msc3202.device_one_time_key_counts"] = counts
            body["org.matrix.msc3202.device_one_time_keys_count"] = counts
        if fallback:
            body["org.matrix.msc3202.device_unused_fallback_key_types"] = fallback
