"""Device lists of users on other servers (spec "Device Management"), tracked as Synapse does.

A remote server announces each change of one of its users' devices with an `m.device_list_update`
EDU carrying that user's `stream_id` and the `prev_id`s it follows. Updates are applied in order
when every `prev_id` is known (the stored extremity, an update seen since the last resync, or an
earlier update of the same batch); otherwise (a lost EDU, the first EDU we see for the user, an
empty `prev_id`) the whole list is fetched again with GET /_matrix/federation/v1/user/devices/
{userId} ("resync"). A failed resync marks the list stale, so key queries go to the remote server
until a later resync works. `m.signing_key_update` replaces the user's master / self-signing keys.

Every applied change records a row in the device-list stream in the same transaction
(`DeviceListService.changing`), so local users sharing a room with the remote user see them in
/sync `device_lists.changed` and GET /keys/changes.

Updates are only accepted for users of the sending server who share a room with a local user: we
have no use for anyone else's devices, and a server must not fill our tables with them.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard
from weakref import WeakValueDictionary

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.core.streams import EventsRow, StreamRow
from homeserver.events import constants as c
from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import FederationError
from homeserver.services.device_lists import DeviceListService
from homeserver.services.e2e_keys import CROSS_SIGNING_FIELDS, cross_signing_public_key
from homeserver.state.current import CurrentStateCache
from homeserver.storage.stores.e2e import CrossSigningKey, E2eStore
from homeserver.storage.stores.remote_devices import RemoteDevice, RemoteDeviceStore

logger = logging.getLogger(__name__)

# As Synapse: a snapshot with more devices than this is something going wrong on the remote side
# (a bot making a device per login); it is not stored.
MAX_DEVICES = 1000
RESYNC_TIME_LIMIT_S = 10.0  # an EDU handler waits for it inside the sender's /send
MIN_RESYNC_TIME_S = 1.0
# Stream ids seen since the last resync, per user (for prev_id checks); bounded.
MAX_SEEN_USERS = 10_000
MAX_SEEN_PER_USER = 1_000
MAX_ID_LENGTH = 255


class JsonGetter(Protocol):
    async def get_json(
        self, destination: str, path: str, args: Any = None, *, time_limit: float | None = None
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    user_id: str
    device_id: str
    stream_id: int
    prev_ids: tuple[int, ...]
    deleted: bool
    display_name: str | None
    keys: dict[str, Any] | None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _short_str(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def parse_device_keys(user_id: str, device_id: str, keys: Any) -> dict[str, Any] | None:
    """A remote device's identity keys, or None when absent; ValueError when malformed (keys that
    claim another user or device must not be stored under this one)."""
    if keys is None:
        return None
    if not isinstance(keys, dict):
        raise ValueError("keys is not an object")
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        raise ValueError("keys name another user or device")
    if not isinstance(keys.get("keys"), dict) or not isinstance(keys.get("algorithms"), list):
        raise ValueError("keys lack 'keys' or 'algorithms'")
    return {k: v for k, v in keys.items() if k != "unsigned"}


def parse_device_update(origin: str, content: Mapping[str, Any]) -> DeviceUpdate:
    """The content of an m.device_list_update EDU; ValueError when it must be ignored."""
    user_id = content.get("user_id")
    if not isinstance(user_id, str) or not ids.is_valid_user_id(user_id):
        raise ValueError("invalid user_id")
    if ids.server_of(user_id) != origin:
        raise ValueError(f"{user_id} is not a user of {origin}")
    device_id = content.get("device_id")
    stream_id = content.get("stream_id")
    if not _short_str(device_id) or not _is_int(stream_id):
        raise ValueError("invalid device_id or stream_id")
    prev = content.get("prev_id", [])
    if prev is None:
        prev = []
    if not isinstance(prev, list) or not all(_is_int(p) for p in prev):
        raise ValueError("invalid prev_id")
    deleted = content.get("deleted", False)
    name = content.get("device_display_name")
    if not isinstance(deleted, bool) or (name is not None and not isinstance(name, str)):
        raise ValueError("invalid deleted or device_display_name")
    keys = None if deleted else parse_device_keys(user_id, device_id, content.get("keys"))
    return DeviceUpdate(user_id, device_id, stream_id, tuple(prev), deleted, name, keys)


def parse_cross_signing_key(user_id: str, key_type: str, key: Any) -> CrossSigningKey | None:
    """A remote user's master or self-signing key as sent by its server; None when malformed."""
    if not isinstance(key, dict) or key.get("user_id") != user_id:
        return None
    usage = key.get("usage")
    if not isinstance(usage, list) or key_type not in usage:
        return None
    try:
        public = cross_signing_public_key(key)
    except MatrixError:
        return None
    return CrossSigningKey(user_id, key_type, public, {k: v for k, v in key.items() if k != "unsigned"})


def parse_cross_signing_keys(user_id: str, body: Mapping[str, Any]) -> list[CrossSigningKey]:
    """master_key / self_signing_key of a /user/devices answer or an m.signing_key_update EDU
    (a user-signing key is private to its owner and never taken from another server)."""
    keys = []
    for field in ("master_key", "self_signing_key"):
        if body.get(field) is None:
            continue
        key = parse_cross_signing_key(user_id, CROSS_SIGNING_FIELDS[field], body[field])
        if key is None:
            logger.info("ignoring a malformed %s of %s", field, user_id)
            continue
        keys.append(key)
    return keys


class RemoteDeviceLists:
    def __init__(
        self,
        store: RemoteDeviceStore,
        e2e_store: E2eStore,
        device_lists: DeviceListService,
        state: CurrentStateCache,
        client: JsonGetter,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self.store = store
        self.e2e_store = e2e_store
        self.device_lists = device_lists
        self.state = state
        self.client = client
        self.clock = clock
        self.server_name = server_name
        self._pending: dict[str, list[DeviceUpdate]] = {}
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        self._seen: OrderedDict[str, set[int]] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _lock(self, user_id: str) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        return lock

    async def shares_room(self, user_id: str) -> bool:
        """Whether a local user shares a joined room with `user_id`."""
        return bool(await self.device_lists.local_users_sharing_rooms(user_id))

    # -- m.device_list_update ----------------------------------------------------------------------

    async def on_device_list_update(self, origin: str, content: Mapping[str, Any]) -> None:
        try:
            update = parse_device_update(origin, content)
        except ValueError as exc:
            logger.info("ignoring m.device_list_update from %s: %s", origin, exc)
            return
        if not await self.shares_room(update.user_id):
            logger.info("ignoring m.device_list_update for %s: no room shared with them", update.user_id)
            return
        self._pending.setdefault(update.user_id, []).append(update)
        async with self._lock(update.user_id):
            updates = self._pending.pop(update.user_id, [])
            if not updates:
                return  # applied by the call that held the lock meanwhile
            tracked = await self.store.get_list(update.user_id)
            if tracked is None or tracked.stale or tracked.stream_id is None:
                await self.resync(update.user_id)
                return
            seen = self._seen.get(update.user_id, set())
            # a retransmitted update was applied already: applying it again would move the
            # extremity back
            updates = [u for u in updates if u.stream_id != tracked.stream_id and u.stream_id not in seen]
            if not updates:
                return
            if self._needs_resync(tracked.stream_id, seen, updates):
                await self.resync(update.user_id)
            else:
                await self._apply(update.user_id, updates)

    @staticmethod
    def _needs_resync(extremity: int, seen: set[int], updates: Sequence[DeviceUpdate]) -> bool:
        in_batch: set[int] = set()
        for update in updates:
            if not update.prev_ids:
                return True  # as Synapse: a sequence that starts afresh
            for prev in update.prev_ids:
                if prev != extremity and prev not in seen and prev not in in_batch:
                    return True
            in_batch.add(update.stream_id)
        return False

    async def _apply(self, user_id: str, updates: Sequence[DeviceUpdate]) -> None:
        now = self.clock.time_ms()
        async with self.device_lists.changing([(user_id, None)]) as pending:
            for update in updates:
                if update.deleted:
                    await self.store.delete_device_txn(pending.conn, user_id, update.device_id)
                else:
                    device = RemoteDevice(update.device_id, update.display_name, update.keys)
                    await self.store.upsert_device_txn(pending.conn, user_id, device)
            await self.store.set_extremity_txn(pending.conn, user_id, updates[-1].stream_id, now)
        self._remember(user_id, [u.stream_id for u in updates])

    def _remember(self, user_id: str, stream_ids: Sequence[int], *, reset: bool = False) -> None:
        seen = self._seen.pop(user_id, set())
        if reset:
            seen = set()
        seen.update(stream_ids)
        if len(seen) > MAX_SEEN_PER_USER:
            seen = set(sorted(seen)[-MAX_SEEN_PER_USER:])
        self._seen[user_id] = seen
        while len(self._seen) > MAX_SEEN_USERS:
            self._seen.popitem(last=False)

    # -- resync --------------------------------------------------------------------------------------

    async def resync(self, user_id: str, time_limit: float = RESYNC_TIME_LIMIT_S) -> bool:
        """Fetch the user's whole device list from their server and replace the cached one.
        False (and the list marked stale) when the server could not give a usable answer."""
        server = ids.server_of(user_id)
        path = "/_matrix/federation/v1/user/devices/" + urllib.parse.quote(user_id, safe="")
        try:
            body = await self.client.get_json(server, path, time_limit=time_limit)
            stream_id, devices = self._parse_snapshot(user_id, body)
        except (FederationError, NotRetryingDestination, ValueError) as exc:
            logger.info("resyncing the device list of %s failed: %s", user_id, exc)
            await self.store.mark_stale(user_id, self.clock.time_ms())
            return False
        cross = parse_cross_signing_keys(user_id, body)
        now = self.clock.time_ms()
        async with self.device_lists.changing([(user_id, None)]) as pending:
            await self.store.replace_devices_txn(pending.conn, user_id, devices)
            for key in cross:
                await self.e2e_store.upsert_cross_signing_key_txn(pending.conn, key, now)
            await self.store.set_extremity_txn(pending.conn, user_id, stream_id, now)
        self._remember(user_id, [stream_id], reset=True)
        return True

    @staticmethod
    def _parse_snapshot(user_id: str, body: Any) -> tuple[int, list[RemoteDevice]]:
        if not isinstance(body, dict) or body.get("user_id") != user_id:
            raise ValueError("the answer is not about this user")
        stream_id, raw = body.get("stream_id"), body.get("devices")
        if not _is_int(stream_id) or not isinstance(raw, list):
            raise ValueError("invalid stream_id or devices")
        if len(raw) > MAX_DEVICES:
            logger.warning("ignoring the device list of %s: %d devices", user_id, len(raw))
            raw = []
        devices = []
        for entry in raw:
            if not isinstance(entry, dict) or not _short_str(entry.get("device_id")):
                continue
            device_id = entry["device_id"]
            name = entry.get("device_display_name")
            try:
                keys = parse_device_keys(user_id, device_id, entry.get("keys") or None)
            except ValueError:
                logger.info("ignoring malformed keys of %s's device %s", user_id, device_id)
                keys = None
            devices.append(RemoteDevice(device_id, name if isinstance(name, str) else None, keys))
        return stream_id, devices

    async def ensure_synced(self, user_ids: Sequence[str], deadline: float) -> set[str]:
        """The users among `user_ids` whose cached list can answer a key query: tracked and not
        stale, or resynced now (before `deadline`, event-loop time) because a local user shares a
        room with them."""
        lists = await self.store.get_lists(user_ids)
        usable = {u for u, t in lists.items() if not t.stale and t.stream_id is not None}
        loop = asyncio.get_running_loop()
        for user_id in user_ids:
            if user_id in usable or not await self.shares_room(user_id):
                continue
            if deadline - loop.time() < MIN_RESYNC_TIME_S:
                break  # the rest go to /user/keys/query
            async with self._lock(user_id):
                if await self.resync(user_id, deadline - loop.time()):
                    usable.add(user_id)
        return usable

    # -- no longer sharing a room ------------------------------------------------------------------

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Events stream consumer: when a remote user may have stopped sharing every room with our
        users (they left, or one of ours did), stop tracking them. Their server stops sending us
        updates then, so the cache would silently go stale (as Synapse: unsubscribe)."""
        for row in rows:
            if not isinstance(row, EventsRow) or not row.is_live or row.state_key is None:
                continue
            if row.membership is None or row.membership == c.JOIN:
                continue
            task = asyncio.get_running_loop().create_task(self._left(row.room_id, row.state_key))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    async def _left(self, room_id: str, user_id: str) -> None:
        if ids.server_of(user_id) != self.server_name:
            candidates = [user_id]
        else:  # one of ours left: any remote member of the room may now share nothing with us
            snapshot = await self.state.get(room_id)
            members = snapshot.members_with(c.JOIN) if snapshot is not None else []
            candidates = [u for u in members if ids.server_of(u) != self.server_name]
        if not candidates:
            return
        tracked = await self.store.get_lists(candidates)
        for other in tracked:
            if not await self.shares_room(other):
                async with self._lock(other):
                    await self.store.forget(other)
                    self._seen.pop(other, None)
                logger.info("no longer tracking the device list of %s: no room shared", other)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("device-list untracking failed", exc_info=task.exception())

    # -- m.signing_key_update ----------------------------------------------------------------------

    async def on_signing_key_update(self, origin: str, content: Mapping[str, Any]) -> None:
        user_id = content.get("user_id")
        if not isinstance(user_id, str) or not ids.is_valid_user_id(user_id):
            return
        if ids.server_of(user_id) != origin:
            logger.info("ignoring m.signing_key_update from %s: invalid user_id", origin)
            return
        keys = parse_cross_signing_keys(user_id, content)
        if not keys:
            logger.info("ignoring m.signing_key_update for %s: no valid key", user_id)
            return
        if not await self.shares_room(user_id):
            logger.info("ignoring m.signing_key_update for %s: no room shared with them", user_id)
            return
        now = self.clock.time_ms()
        async with self.device_lists.changing([(user_id, None)]) as pending:
            for key in keys:
                await self.e2e_store.upsert_cross_signing_key_txn(pending.conn, key, now)
