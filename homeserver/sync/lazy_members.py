"""Which member events each device was sent, so lazy-loading syncs skip redundant ones.

Spec "Lazy-loading room members": with `lazy_load_members` and `include_redundant_members` false
(the default), the server may assume the client remembers the member events it was sent and skip
them. Without this an incremental sync repeats the syncing user's and every sender's member event
whenever a room shows up (for a receipt, a typing notice, a message), and Element then refetches
the profiles. Synapse keeps the same information per (user, device) in memory.

What a device "has" is what it received in a response it then built on: the member events a
response carries are kept as pending with its `next_batch`, and become known only when the device
syncs with exactly that token. A lost response (the client retries with the older token) is thus
never counted as received. Everything lives in memory with LRU bounds; forgetting (a restart, an
eviction, a different filter or device) only makes the server send a member event again, which the
spec allows. An initial sync or `full_state=true` starts afresh.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homeserver.sync.service import SyncRequest

# (room_id, user_id) -> event id of the member event the device was sent
MemberKey = tuple[str, str]


class _DeviceMembers:
    __slots__ = ("known", "pending", "pending_token")

    def __init__(self) -> None:
        self.known: OrderedDict[MemberKey, str] = OrderedDict()
        self.pending: dict[MemberKey, str] = {}
        self.pending_token: str | None = None


class LazyMemberSession:
    """One /sync request's view: what the device has, and what this response sends."""

    __slots__ = ("_device", "dedupe", "sent")

    def __init__(self, device: _DeviceMembers, dedupe: bool) -> None:
        self._device = device
        self.dedupe = dedupe
        self.sent: dict[MemberKey, str] = {}

    def has(self, room_id: str, user_id: str, event_id: str) -> bool:
        return self.dedupe and self._device.known.get((room_id, user_id)) == event_id

    def record(self, room_id: str, user_id: str, event_id: str) -> None:
        self.sent[(room_id, user_id)] = event_id


class LazyMemberTracker:
    MAX_DEVICES = 5_000
    MAX_MEMBERS_PER_DEVICE = 1_000

    def __init__(self) -> None:
        # (user_id, device_id, filter) -> members; least recently syncing device first
        self._devices: OrderedDict[tuple[str, str, str], _DeviceMembers] = OrderedDict()

    def begin(self, req: SyncRequest) -> LazyMemberSession | None:
        """The session for a request, or None when the filter does not lazy-load (or asks for
        redundant members) or the requester has no device."""
        flt = req.filter
        if not flt.lazy_load_members or flt.include_redundant_members or req.device_id is None:
            return None
        key = (req.user_id, req.device_id, req.filter_key)
        device = self._devices.get(key)
        fresh = req.since is None or req.full_state
        if device is None or fresh:
            device = self._devices[key] = _DeviceMembers()
            if len(self._devices) > self.MAX_DEVICES:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(key)
            assert req.since is not None
            if device.pending and device.pending_token == req.since.serialize():
                self._confirm(device)
            device.pending = {}
            device.pending_token = None
        return LazyMemberSession(device, dedupe=not fresh)

    def finish(self, session: LazyMemberSession, next_batch: str) -> None:
        """The response is built: its member events are pending until the device syncs from
        `next_batch`."""
        device = session._device
        device.pending = session.sent
        device.pending_token = next_batch

    def forget(self, user_id: str, device_id: str | None, filter_key: str) -> None:
        """A live connection ended: what it was sent is no longer worth remembering."""
        if device_id is not None:
            self._devices.pop((user_id, device_id, filter_key), None)

    def _confirm(self, device: _DeviceMembers) -> None:
        known = device.known
        for key, event_id in device.pending.items():
            known[key] = event_id
            known.move_to_end(key)
        while len(known) > self.MAX_MEMBERS_PER_DEVICE:
            known.popitem(last=False)
