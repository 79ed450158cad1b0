"""Wiring one process into a scale-out deployment (docs/scale-out.md).

`handshake(config)` runs before a worker builds its services (it needs main's typing position);
`start_replication(services, ...)` runs in `Services.start` once the caches are loaded: main
announces on Redis, a worker follows. With `redis.enabled: false` and role `main` (the embedded
default) nothing here runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from homeserver.config.sections import HomeserverConfig
from homeserver.core.streams import (
    AccountDataRow,
    DeviceListsRow,
    EventsRow,
    PresenceStreamRow,
    ReceiptRow,
    Stream,
    StreamRow,
)
from homeserver.replication.redis_link import (
    RedisPublisher,
    ReplicationUnavailableError,
    check_reachable,
    make_client,
)
from homeserver.replication.roles import ROLE_SPECS
from homeserver.replication.worker import ReplicaTargets, WorkerFeed
from homeserver.scaleout.main_client import MainClient
from homeserver.services.ignore import IGNORED_USER_LIST
from homeserver.services.push_rules import PUSH_RULES_TYPE
from homeserver.services.retention import RETENTION_PURGE

if TYPE_CHECKING:
    from homeserver.container import Services

logger = logging.getLogger(__name__)

STARTUP_CATCH_UP_SECONDS = 60.0


async def handshake(config: HomeserverConfig) -> tuple[MainClient, dict[str, Any]]:
    """A worker checks in with main (the shared secret) before building anything."""
    client = MainClient(config.workers)
    try:
        info = await client.handshake()
    except BaseException:
        await client.close()
        raise
    if info.get("server_name") != config.server_name:
        await client.close()
        raise ReplicationUnavailableError(
            f"the main process serves {info.get('server_name')!r}, this worker {config.server_name!r}"
        )
    return client, info


class Replication:
    """The scale-out part of a running process: a publisher (main) or a feed (worker)."""

    def __init__(self, publisher: RedisPublisher | None, feed: WorkerFeed | None, main: MainClient | None):
        self.publisher = publisher
        self.feed = feed
        self.main = main

    async def stop(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
        if self.feed is not None:
            await self.feed.stop()
        if self.main is not None:
            await self.main.close()


async def start_replication(services: Services, main: MainClient | None) -> Replication | None:
    config = services.config
    if not config.redis.enabled:
        return None
    redis = config.redis
    client = make_client(redis.host, redis.port, redis.password, redis.dbid or 0, redis.use_tls)
    try:
        await check_reachable(client, f"{redis.host}:{redis.port}")
    except BaseException:
        await client.aclose()
        raise
    if config.workers.is_main:
        return Replication(_start_publisher(services, client), None, None)
    assert main is not None
    feed = await _start_feed(services, client, main)
    return Replication(None, feed, main)


def _start_publisher(services: Services, client: Any) -> RedisPublisher:
    presence = services.presence

    def presence_rows(rows: Sequence[StreamRow]) -> Any:
        return presence.snapshot_rows(r.user_id for r in rows if isinstance(r, PresenceStreamRow))

    publisher = RedisPublisher(
        client, services.bus, services.config.server_name, {Stream.PRESENCE: presence_rows}
    )
    publisher.attach()

    def tokens_invalidated(hashes: list[str] | None, user_id: str | None) -> None:
        publisher.invalidate("tokens", hashes=hashes, user_id=user_id)

    async def pusher_changed(user_id: str, app_id: str, pushkey: str) -> None:
        publisher.invalidate("pusher", user_id=user_id, app_id=app_id, pushkey=pushkey)

    async def read_moved(user_id: str, room_id: str, thread_id: str | None, event_id: str, pos: int) -> None:
        # after the unread counts moved in the database (the hooks run in order): workers
        # recount, and the pusher worker sends the badge update
        publisher.invalidate(
            "read", user_id=user_id, room_id=room_id, thread_id=thread_id, event_id=event_id, position=pos
        )

    if services.federation_outbox is not None:  # a worker sends: tell it to read the outbox
        services.federation_outbox.wake_hooks.append(lambda: publisher.invalidate("federation_outbox"))

    async def destination_reset(destination: str) -> None:
        # the admin API's reset_connection on main: the sending worker forgets its backoff too
        publisher.invalidate("federation_reset", destination=destination)

    services.destination_admin.reset_hooks.append(destination_reset)
    # events purged here (or by the background worker, through the replication API): the workers'
    # event caches drop them too
    services.retention.forgotten_hooks.append(
        lambda event_ids: publisher.invalidate("events_purged", event_ids=event_ids)
    )
    services.auth.invalidated_hooks.append(tokens_invalidated)
    services.receipts.receipt_hooks.append(read_moved)
    services.pushers.changed_hooks.append(pusher_changed)
    publisher.start()
    logger.info("replication: announcing stream positions on Redis")
    return publisher


async def _start_feed(services: Services, client: Any, main: MainClient) -> WorkerFeed:
    role = services.config.workers.role
    spec = ROLE_SPECS[role]

    async def tokens(message: dict[str, Any]) -> None:
        if message.get("hashes"):
            services.auth.invalidate(list(message["hashes"]), replicated=True)
        if message.get("user_id"):
            services.auth.invalidate_user(str(message["user_id"]), replicated=True)

    async def pusher(message: dict[str, Any]) -> None:
        await services.pusher_pool.on_pusher_changed(
            message["user_id"], message["app_id"], message["pushkey"]
        )

    async def read(message: dict[str, Any]) -> None:
        user_id, room_id = str(message["user_id"]), str(message["room_id"])
        services.notifications.forget(user_id, room_id)
        if services.pusher_pool.enabled:
            await services.pusher_pool.on_read(
                user_id, room_id, message.get("thread_id"), str(message["event_id"]), int(message["position"])
            )

    async def federation_outbox(message: dict[str, Any]) -> None:
        if services.federation_outbox_reader is not None:
            services.federation_outbox_reader.poke()

    async def federation_reset(message: dict[str, Any]) -> None:
        if services.federation_sender is not None:
            await services.federation_sender.reset_destination(str(message["destination"]))

    async def events_purged(message: dict[str, Any]) -> None:
        for event_id in message.get("event_ids") or []:
            services.events.invalidate(str(event_id))

    if services.jobs.runs(RETENTION_PURGE):  # the background worker: main announces for us
        pending: set[asyncio.Task[None]] = set()

        def purged(event_ids: list[str]) -> None:
            task = asyncio.get_running_loop().create_task(main.events_purged(list(event_ids)))
            pending.add(task)
            task.add_done_callback(pending.discard)

        services.retention.forgotten_hooks.append(purged)

    targets = ReplicaTargets(
        bus=services.bus,
        state=services.state,
        events=services.events,
        persister=services.persister,
        generators={
            Stream.ACCOUNT_DATA: services.account_data_stream,
            Stream.RECEIPTS: services.receipts_stream,
            Stream.TO_DEVICE: services.to_device_stream,
            Stream.DEVICE_LISTS: services.device_lists_stream,
        },
        typing=services.typing,
        presence=services.presence,
        wake_device_lists=_device_list_waker(services),
        db_positions=services.database_positions,
        typing_snapshot=main.typing_snapshot,
        invalidation_handlers={
            "tokens": tokens,
            "pusher": pusher,
            "read": read,
            "federation_outbox": federation_outbox,
            "federation_reset": federation_reset,
            "events_purged": events_purged,
        },
    )
    if Stream.EVENTS in spec.streams:
        services.bus.subscribe(Stream.EVENTS, _unread_counts_on_events(services))
    if Stream.RECEIPTS in spec.streams:
        services.bus.subscribe(Stream.RECEIPTS, _receipts_replica(services))
    if Stream.ACCOUNT_DATA in spec.streams:
        services.bus.subscribe(Stream.ACCOUNT_DATA, _account_data_caches(services))
    if Stream.PRESENCE in spec.streams:
        await services.presence.start_replica()
    feed = WorkerFeed(client, services.config.server_name, spec.streams, targets)
    feed.start()
    try:
        await asyncio.wait_for(feed.connected.wait(), STARTUP_CATCH_UP_SECONDS)
    except TimeoutError:
        await feed.stop()
        raise ReplicationUnavailableError(
            "could not subscribe to Redis and catch up within a minute"
        ) from None
    logger.info(
        "replication: %s worker %r following %d stream(s)",
        role,
        services.config.workers.name,
        len(spec.streams),
    )
    return feed


def _device_list_waker(services: Services) -> Any:
    device_lists = services.device_lists

    async def wake(position: int, rows: Sequence[StreamRow]) -> None:
        users: set[str] = set()
        for row in rows:
            if not isinstance(row, DeviceListsRow):
                continue
            if row.visible_to is not None:
                users.add(row.visible_to)
            else:
                users.add(row.user_id)
                users |= await device_lists.local_users_sharing_rooms(row.user_id)
        services.notifier.on_user_event(Stream.DEVICE_LISTS, position, users)

    return wake


def _unread_counts_on_events(services: Services) -> Any:
    """Main adds new notifications to its cached unread counts inside the event transaction; a
    worker, which never sees that transaction, drops the counts of the rooms written to."""
    notifications = services.notifications

    def on_events(position: int, rows: Sequence[StreamRow]) -> None:
        for room_id in {r.room_id for r in rows if isinstance(r, EventsRow) and r.is_live}:
            notifications.forget_room(room_id)

    return on_events


def _receipts_replica(services: Services) -> Any:
    """Receipts main stored: the worker's receipt caches learn of them (services/receipts.py),
    and a read receipt drops the user's cached unread count. Both happen with the row itself,
    before any /sync it wakes runs (main marks the room read before announcing the receipt; the
    separate "read" invalidation may arrive after that wake-up)."""
    receipts, notifications = services.receipts, services.notifications

    def on_receipts(position: int, rows: Sequence[StreamRow]) -> None:
        received = [r for r in rows if isinstance(r, ReceiptRow)]
        receipts.apply_replicated(received)
        for row in received:
            if row.receipt_type in ("m.read", "m.read.private"):
                notifications.forget(row.user_id, row.room_id)

    return on_receipts


def _account_data_caches(services: Services) -> Any:
    """Caches main updates in place when the user writes (push rules, ignored users): a worker
    drops them when the account-data row arrives."""

    def on_account_data(position: int, rows: Sequence[StreamRow]) -> None:
        for row in rows:
            if not isinstance(row, AccountDataRow) or row.room_id:
                continue
            if row.type == PUSH_RULES_TYPE:
                services.push_rules.invalidate(row.user_id)
            elif row.type == IGNORED_USER_LIST:
                services.ignore.forget(row.user_id)

    return on_account_data


def forward_sync_presence(main: MainClient) -> tuple[Any, Any]:
    """A worker's /sync start and end hooks: main keeps the user online."""

    async def started(req: Any) -> None:
        main.presence_syncing(req.user_id, req.device_id, req.set_presence, True)

    def finished(req: Any) -> None:
        main.presence_syncing(req.user_id, req.device_id, req.set_presence, False)

    return started, finished
