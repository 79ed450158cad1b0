"""Room deletion (shutdown + purge) and history purges, as resumable background jobs.

Delete (Synapse's DELETE /_synapse/admin/v2/rooms/{roomId}): block and unpublish the room, create
the optional "content violation" room, then in batches make every local member leave (and forget)
the room, joining them to the new room; move or delete the local aliases; then purge: delete the
room's events in batches and finally every row of the room. Each batch re-reads what is left (who
is still in the room, which events remain), so a job resumed after a restart neither skips nor
repeats work; the event deletes commit together with the job's progress.

History purge: delete the room's non-state events older than a point, in batches, never the state
(auth and current state need it) nor the room's latest event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, not_found
from homeserver.events import constants as c
from homeserver.jobs.runner import JobFailed, JobRunner, Step
from homeserver.persist.persister import EventDraft, EventPersister
from homeserver.services.audit_sink import AuditSink, NoAudit
from homeserver.services.membership import MembershipService
from homeserver.services.rooms import RoomService
from homeserver.state.current import CurrentStateCache
from homeserver.storage.database import Connection
from homeserver.storage.stores.admin_rooms import AdminRoomStore
from homeserver.storage.stores.events import EventStore, RoomVersionLookup
from homeserver.storage.stores.jobs import FAILED, UNFINISHED, Job
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.search import SearchStore

logger = logging.getLogger(__name__)

DELETE_ROOM = "shutdown_and_purge_room"
PURGE_HISTORY = "purge_history"

KICK_BATCH = 20
EVENT_BATCH = 200

DEFAULT_ROOM_NAME = "Content Violation Notification"
DEFAULT_MESSAGE = (
    "Sharing illegal content on this server is not permitted and rooms in violation will be blocked."
)


def _empty_result() -> dict[str, Any]:
    return {"kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": None}


def shutdown_result(job: Job) -> dict[str, Any]:
    result = _empty_result()
    for key in result:
        if key in job.progress:
            result[key] = job.progress[key]
    return result


def delete_status(job: Job) -> dict[str, Any]:
    """One task as GET /_synapse/admin/v2/rooms/.../delete_status shows it."""
    body: dict[str, Any] = {
        "delete_id": job.job_id,
        "room_id": job.subject,
        "status": job.status,
        "shutdown_room": shutdown_result(job),
    }
    if job.status == FAILED and job.error:
        body["error"] = job.error
    return body


class RoomDeletionService:
    def __init__(
        self,
        jobs: JobRunner,
        store: AdminRoomStore,
        rooms: RoomStore,
        events: EventStore,
        room_versions: RoomVersionLookup,
        search: SearchStore,
        state: CurrentStateCache,
        persister: EventPersister,
        membership: MembershipService,
        room_service: RoomService,
        clock: Clock,
        *,
        server_name: str,
        audit: AuditSink | None = None,
        forgotten: Callable[[str, str], None] | None = None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.rooms = rooms
        self.events = events
        self.room_versions = room_versions
        self.search = search
        self.state = state
        self.persister = persister
        self.membership = membership
        self.room_service = room_service
        self.clock = clock
        self.server_name = server_name
        self.audit: AuditSink = audit or NoAudit()
        jobs.register(DELETE_ROOM, _DeleteRoomJob(self))
        jobs.register(PURGE_HISTORY, _PurgeHistoryJob(self))

    def _is_local(self, user_id: str) -> bool:
        return ids.server_of(user_id) == self.server_name

    # -- room deletion -------------------------------------------------------------------------------

    async def start_delete(self, admin: str, room_id: str, body: dict[str, Any]) -> Job:
        params = _delete_params(body)
        if not ids.is_valid_room_id(room_id):
            raise MatrixError(400, "M_UNKNOWN", f"{room_id} is not a legal room ID")
        if await self.jobs.store.list_jobs(kind=DELETE_ROOM, subject=room_id, statuses=UNFINISHED):
            raise MatrixError(400, "M_UNKNOWN", f"Purge already in progress for {room_id}")
        params["requester_user_id"] = admin
        job = await self.jobs.submit(DELETE_ROOM, params, subject=room_id, progress={"phase": "shutdown"})
        await self.audit.record("room.delete", actor=admin, target=room_id, detail=params)
        return job

    async def delete_now(self, admin: str, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """DELETE /v1/rooms/{roomId}: the same job, awaited."""
        job = await self.start_delete(admin, room_id, body)
        done = await self.jobs.wait(job.job_id)
        if done.status == FAILED:
            raise MatrixError(400, "M_UNKNOWN", done.error or "Room deletion failed")
        return shutdown_result(done)

    async def delete_status_by_room(self, room_id: str) -> dict[str, Any]:
        if not ids.is_valid_room_id(room_id):
            raise MatrixError(400, "M_UNKNOWN", f"{room_id} is not a legal room ID")
        found = await self.jobs.store.list_jobs(kind=DELETE_ROOM, subject=room_id)
        if not found:
            raise not_found(f"No delete task for room_id '{room_id}' found")
        return {"results": [delete_status(job) for job in found]}

    async def delete_status_by_id(self, delete_id: str) -> dict[str, Any]:
        job = await self.jobs.get(delete_id)
        if job is None or job.kind != DELETE_ROOM:
            raise not_found(f"delete id '{delete_id}' not found")
        return delete_status(job)

    # -- history purge -------------------------------------------------------------------------------

    async def start_purge_history(
        self, admin: str, room_id: str, event_id: str | None, body: dict[str, Any]
    ) -> str:
        delete_local = bool(body.get("delete_local_events", False))
        if event_id is None:
            value = body.get("purge_up_to_event_id")
            event_id = value if isinstance(value, str) else None
        if event_id is not None:
            stored = await self.events.get_event(event_id)
            if stored is None:
                raise not_found(f"Could not find event {event_id}")
            if stored.event.room_id != room_id:
                raise MatrixError(400, "M_UNKNOWN", "Event is for wrong room.")
            upto = stored.stream_ordering
        elif "purge_up_to_ts" in body:
            ts = body["purge_up_to_ts"]
            if type(ts) is not int:
                raise MatrixError(400, "M_BAD_JSON", "purge_up_to_ts must be an int")
            found = await self.store.last_ordering_before_ts(room_id, ts)
            if found is None:
                raise not_found("there is no event to be purged")
            upto = found
        else:
            raise MatrixError(400, "M_BAD_JSON", "must specify purge_up_to_event_id or purge_up_to_ts")
        params = {
            "room_id": room_id,
            "upto": upto,
            "keep": await self.store.latest_event(room_id),
            "delete_local_events": delete_local,
        }
        job = await self.jobs.submit(
            PURGE_HISTORY, params, subject=room_id, progress={"after": 0, "deleted": 0}
        )
        await self.audit.record("room.purge_history", actor=admin, target=room_id, detail=params)
        return job.job_id

    async def purge_status(self, purge_id: str) -> dict[str, Any]:
        job = await self.jobs.get(purge_id)
        if job is None or job.kind != PURGE_HISTORY:
            raise not_found(f"purge id '{purge_id}' not found")
        # Synapse reports anything unfinished as "active".
        status = job.status if job.status in ("complete", "failed") else "active"
        body: dict[str, Any] = {"status": status}
        if job.error:
            body["error"] = job.error
        return body

    # -- shared purge steps ---------------------------------------------------------------------------

    def _delete_events(self, room_id: str, event_ids: list[str]) -> Callable[[Connection], Awaitable[None]]:
        async def commit(conn: Connection) -> None:
            await self.search.delete_events_txn(conn, event_ids)
            await self.store.delete_events_txn(conn, event_ids)
            for event_id in event_ids:
                self.events.invalidate(event_id)

        return commit

    def forget_room_caches(self, room_id: str) -> None:
        self.state.evict(room_id)
        self.room_versions.forget(room_id)


def _delete_params(body: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, default in (("block", False), ("purge", True), ("force_purge", False)):
        value = body.get(key, default)
        if not isinstance(value, bool):
            raise MatrixError(400, "M_BAD_JSON", f"Param '{key}' must be a boolean, if given")
        params[key] = value
    for key in ("new_room_user_id", "room_name", "message"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise MatrixError(400, "M_BAD_JSON", f"Param '{key}' must be a string, if given")
        params[key] = value
    new_user = params["new_room_user_id"]
    if new_user is not None:
        ids.check_user_id(new_user)
    return params


class _DeleteRoomJob:
    def __init__(self, service: RoomDeletionService) -> None:
        self.s = service

    async def step(self, job: Job) -> Step:
        progress = dict(job.progress)
        phase = progress.get("phase", "shutdown")
        if phase == "shutdown":
            return await self._shutdown_step(job, progress)
        if phase == "purging":
            return await self._purge_step(job, progress)
        raise JobFailed(f"unknown phase {phase!r}")

    async def _shutdown_step(self, job: Job, progress: dict[str, Any]) -> Step:
        s, params = self.s, job.params
        room_id = job.subject or ""
        exists = await s.rooms.get_room(room_id) is not None
        if not progress.get("setup_done"):
            if params["block"]:
                await s.store.set_block(room_id, params["requester_user_id"], s.clock.time_ms())
            if not exists:
                # Nothing to shut down or purge (Synapse answers the same: complete, empty).
                return Step({**_empty_result(), "phase": "done"}, done=True)
            await s.rooms.set_public(room_id, False)
            progress.update(_empty_result())
            new_user = params.get("new_room_user_id")
            if new_user is not None:
                # Saved right away: a restart after this batch reuses the room.
                progress["new_room_id"] = await self._create_new_room(new_user, params)
            progress["setup_done"] = True
            return Step(progress)

        snapshot = await s.state.get(room_id)
        if snapshot is None:
            raise JobFailed(f"Unknown room id {room_id}")
        done_users = set(progress["kicked_users"]) | set(progress["failed_to_kick_users"])
        pending = sorted(
            u
            for u, m in snapshot.memberships.items()
            if m in (c.JOIN, c.INVITE, c.KNOCK) and s._is_local(u) and u not in done_users
        )
        if pending:
            kicked, failed = list(progress["kicked_users"]), list(progress["failed_to_kick_users"])
            for user_id in pending[:KICK_BATCH]:
                try:
                    await self._move_user(user_id, room_id, progress.get("new_room_id"))
                    kicked.append(user_id)
                except MatrixError as exc:
                    logger.warning("could not remove %s from %s: %s", user_id, room_id, exc)
                    failed.append(user_id)
            progress["kicked_users"], progress["failed_to_kick_users"] = kicked, failed
            return Step(progress)

        # Everyone is out: move (or drop) the local aliases.
        aliases = await s.rooms.list_aliases(room_id)
        new_room_id = progress.get("new_room_id")
        for alias in aliases:
            await s.rooms.delete_alias(alias)
            if new_room_id is not None:
                await s.rooms.insert_alias(alias, new_room_id, params["requester_user_id"], s.clock.time_ms())
        progress["local_aliases"] = sorted(set(progress.get("local_aliases", [])) | set(aliases))
        if not params["purge"]:
            return Step({**progress, "phase": "done"}, done=True)
        progress["phase"] = "purging"
        progress["events_deleted"] = 0
        return Step(progress)

    async def _create_new_room(self, creator: str, params: dict[str, Any]) -> str:
        s = self.s
        room_id, _ = await s.room_service.create_room(
            creator,
            {
                "preset": "public_chat",
                "name": params.get("room_name") or DEFAULT_ROOM_NAME,
                "power_level_content_override": {"users_default": -10},
            },
        )
        await s.persister.send_one(
            EventDraft(
                room_id,
                "m.room.message",
                creator,
                {"body": params.get("message") or DEFAULT_MESSAGE, "msgtype": "m.text"},
            )
        )
        return room_id

    async def _move_user(self, user_id: str, room_id: str, new_room_id: str | None) -> None:
        s = self.s
        await s.membership.leave(user_id, room_id)
        await s.membership.forget(user_id, room_id)
        if new_room_id is not None:
            await s.membership.join(user_id, new_room_id)

    async def _purge_step(self, job: Job, progress: dict[str, Any]) -> Step:
        s, params = self.s, job.params
        room_id = job.subject or ""
        if not params["force_purge"] and not progress.get("purge_checked"):
            snapshot = await s.state.get(room_id)
            if snapshot is not None and any(s._is_local(u) for u in snapshot.members_with(c.JOIN)):
                raise JobFailed("Users are still joined to this room")
            progress["purge_checked"] = True
        batch = await s.store.list_room_event_batch(room_id, EVENT_BATCH)
        if batch:
            event_ids = [event_id for event_id, _ in batch]
            progress["events_deleted"] = int(progress.get("events_deleted", 0)) + len(event_ids)
            return Step(progress, commit=s._delete_events(room_id, event_ids))

        async def drop_room(conn: Connection) -> None:
            await s.store.delete_room_rows_txn(conn, room_id)

        return Step(
            {**progress, "phase": "done"},
            done=True,
            commit=drop_room,
            after=lambda: s.forget_room_caches(room_id),
        )


class _PurgeHistoryJob:
    def __init__(self, service: RoomDeletionService) -> None:
        self.s = service

    async def step(self, job: Job) -> Step:
        s, params = self.s, job.params
        room_id = params["room_id"]
        after = int(job.progress.get("after", 0))
        batch = await s.store.list_history_batch(
            room_id,
            after=after,
            before=int(params["upto"]),
            keep=int(params["keep"]),
            local_suffix=None if params["delete_local_events"] else ":" + s.server_name,
            limit=EVENT_BATCH,
        )
        if not batch:
            return Step(dict(job.progress), done=True)
        progress = {
            "after": batch[-1][1],
            "deleted": int(job.progress.get("deleted", 0)) + len(batch),
        }
        return Step(progress, commit=s._delete_events(room_id, [event_id for event_id, _ in batch]))
