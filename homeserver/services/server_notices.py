"""Server notices (Synapse's `server_notices` config and POST /_synapse/admin/v1/send_server_notice)
and our broadcast extension (one notice to every local user, or to the members of a room or a space
and its child rooms), which runs as a background job.

As in Synapse, each user gets a private room created by the system user (`system_mxid_localpart`,
which needs no account), tagged `m.server_notice` in the user's account data, with `users_default`
-10 so the user can read but not write; the user is invited (or joined with `auto_join`) and a new
room is made when they left the old one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from homeserver.config.sections import ServerNoticesConfig
from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, missing_param, not_found
from homeserver.events import constants as c
from homeserver.jobs.runner import JobRunner, Step
from homeserver.persist.persister import EventDraft, EventPersister
from homeserver.services.account_data import AccountDataService
from homeserver.services.audit_sink import AuditSink, NoAudit
from homeserver.services.membership import MembershipService
from homeserver.services.rooms import RoomService
from homeserver.state.current import CurrentStateCache
from homeserver.storage.stores.admin_rooms import AdminRoomStore
from homeserver.storage.stores.jobs import FAILED, Job
from homeserver.storage.stores.users import UserStore

logger = logging.getLogger(__name__)

SERVER_NOTICE_TAG = "m.server_notice"
BROADCAST = "broadcast_server_notice"
BROADCAST_BATCH = 50
MAX_FAILED_LISTED = 100


class ServerNoticeService:
    def __init__(
        self,
        config: ServerNoticesConfig | None,
        store: AdminRoomStore,
        users: UserStore,
        state: CurrentStateCache,
        persister: EventPersister,
        membership: MembershipService,
        room_service: RoomService,
        account_data: AccountDataService,
        jobs: JobRunner,
        clock: Clock,
        *,
        server_name: str,
        audit: AuditSink | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.users = users
        self.state = state
        self.persister = persister
        self.membership = membership
        self.room_service = room_service
        self.account_data = account_data
        self.jobs = jobs
        self.clock = clock
        self.server_name = server_name
        self.audit: AuditSink = audit or NoAudit()
        # One room creation per user at a time (two notices at once must not make two rooms).
        self._locks: dict[str, asyncio.Lock] = {}
        jobs.register(BROADCAST, _BroadcastJob(self))

    @property
    def system_user(self) -> str | None:
        if self.config is None:
            return None
        return f"@{self.config.system_mxid_localpart}:{self.server_name}"

    def _require_enabled(self) -> ServerNoticesConfig:
        if self.config is None:
            raise MatrixError(400, "M_UNKNOWN", "Server notices are not enabled on this server")
        return self.config

    # -- POST /send_server_notice --------------------------------------------------------------------

    async def send_from_admin(self, admin: str, body: dict[str, Any], txn_id: str | None) -> str:
        for key in ("user_id", "content"):
            if key not in body:
                raise missing_param(f"Missing params: ['{key}']")
        content, event_type, state_key = _notice_fields(body)
        self._require_enabled()
        user_id = body["user_id"]
        if not isinstance(user_id, str) or not ids.is_valid_user_id(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user id: {user_id!r}")
        if ids.server_of(user_id) != self.server_name:
            raise MatrixError(400, "M_UNKNOWN", "Server notices can only be sent to local users")
        if await self.users.get_user(user_id) is None:
            raise not_found("User not found")
        if txn_id is not None:
            earlier = await self.store.get_notice_txn(admin, txn_id)
            if earlier is not None:
                return earlier
        event_id = await self.send_notice(user_id, content, event_type, state_key)
        if txn_id is not None:
            await self.store.insert_notice_txn(admin, txn_id, event_id, self.clock.time_ms())
        await self.audit.record(
            "server_notice.send", actor=admin, target=user_id, detail={"type": event_type}
        )
        return event_id

    async def send_notice(
        self,
        user_id: str,
        content: dict[str, Any],
        event_type: str = "m.room.message",
        state_key: str | None = None,
    ) -> str:
        system = self.system_user
        assert system is not None
        room_id = await self.notice_room_for(user_id)
        persisted = await self.persister.send_one(EventDraft(room_id, event_type, system, content, state_key))
        logger.info("sent server notice %s to %s", persisted.event.event_id, user_id)
        return persisted.event.event_id

    async def notice_room_for(self, user_id: str) -> str:
        """The user's notices room, created (and the user invited) when there is none."""
        config = self._require_enabled()
        system = self.system_user
        assert system is not None
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            room_id = await self.store.get_notice_room(user_id)
            if room_id is not None:
                snapshot = await self.state.get(room_id)
                if (
                    snapshot is not None
                    and snapshot.membership(system) == c.JOIN
                    and snapshot.membership(user_id) in (c.JOIN, c.INVITE)
                ):
                    return room_id
            room_id = await self._create_room(config, system, user_id)
            await self.store.set_notice_room(user_id, room_id)
            return room_id

    async def _create_room(self, config: ServerNoticesConfig, system: str, user_id: str) -> str:
        body: dict[str, Any] = {
            "preset": "private_chat",
            "power_level_content_override": {"users_default": -10},
            "name": config.room_name,
        }
        if config.room_topic:
            body["topic"] = config.room_topic
        if config.room_avatar_url:
            body["initial_state"] = [
                {"type": "m.room.avatar", "state_key": "", "content": {"url": config.room_avatar_url}}
            ]
        room_id, _ = await self.room_service.create_room(system, body)
        if config.system_mxid_display_name is not None or config.system_mxid_avatar_url is not None:
            # The system user has no account (and so no profile): its room profile comes from config.
            member: dict[str, Any] = {"membership": c.JOIN}
            if config.system_mxid_display_name is not None:
                member["displayname"] = config.system_mxid_display_name
            if config.system_mxid_avatar_url is not None:
                member["avatar_url"] = config.system_mxid_avatar_url
            await self.persister.send_one(EventDraft(room_id, c.MEMBER, system, member, system))
        await self.membership.invite(system, room_id, user_id)
        tags = await self.account_data.get(user_id, room_id, "m.tag") or {}
        tag_map = dict(tags.get("tags") or {}) if isinstance(tags, dict) else {}
        tag_map[SERVER_NOTICE_TAG] = {}
        await self.account_data.put(user_id, room_id, "m.tag", {"tags": tag_map}, internal=True)
        if config.auto_join:
            await self.membership.join(user_id, room_id)
        logger.info("created server notices room %s for %s", room_id, user_id)
        return room_id

    # -- broadcast (our extension) -------------------------------------------------------------------

    async def start_broadcast(self, admin: str, body: dict[str, Any]) -> dict[str, Any]:
        if "content" not in body:
            raise missing_param("Missing params: ['content']")
        content, event_type, state_key = _notice_fields(body)
        self._require_enabled()
        target = body.get("room_id")
        params: dict[str, Any] = {
            "content": content,
            "type": event_type,
            "state_key": state_key,
            "requester_user_id": admin,
        }
        if target is None:
            params["scope"] = "all"
            recipients_total = None
        else:
            if not isinstance(target, str) or not ids.is_valid_room_id(target):
                raise MatrixError(400, "M_INVALID_PARAM", "'room_id' must be a room id")
            recipients = await self.local_members_of_tree(target)
            params.update({"scope": "room", "room_id": target, "recipients": recipients})
            recipients_total = len(recipients)
        job = await self.jobs.submit(
            BROADCAST, params, subject=target, progress={"after": "", "index": 0, "sent": 0, "failed": 0}
        )
        await self.audit.record(
            "server_notice.broadcast", actor=admin, target=target, detail={"type": event_type}
        )
        response: dict[str, Any] = {"job_id": job.job_id}
        if recipients_total is not None:
            response["total"] = recipients_total
        return response

    async def local_members_of_tree(self, room_id: str) -> list[str]:
        """Joined local members of the room and, for a space, of its child rooms (recursively)."""
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            raise not_found("Room not found")
        suffix = ":" + self.server_name
        members: set[str] = set()
        seen: set[str] = set()
        queue = [room_id]
        while queue:
            current = queue.pop()
            if current in seen:
                continue
            seen.add(current)
            snap = await self.state.get(current)
            if snap is None:
                continue  # a child room this server is not in
            members.update(u for u in snap.members_with(c.JOIN) if u.endswith(suffix))
            for (etype, state_key), event in snap.state.items():
                if (
                    etype == "m.space.child"
                    and isinstance(event.content.get("via"), list)
                    and event.content["via"]
                ):
                    queue.append(state_key)
        members.discard(self.system_user or "")
        return sorted(members)

    async def broadcast_status(self, job_id: str) -> dict[str, Any]:
        job = await self.jobs.get(job_id)
        if job is None or job.kind != BROADCAST:
            raise not_found(f"broadcast '{job_id}' not found")
        body: dict[str, Any] = {
            "job_id": job.job_id,
            "status": job.status,
            "sent": int(job.progress.get("sent", 0)),
            "failed": int(job.progress.get("failed", 0)),
            "failed_users": list(job.progress.get("failed_users", [])),
        }
        if job.params.get("scope") == "room":
            body["room_id"] = job.params.get("room_id")
            body["total"] = len(job.params.get("recipients", []))
        if job.status == FAILED and job.error:
            body["error"] = job.error
        return body


def _notice_fields(body: dict[str, Any]) -> tuple[dict[str, Any], str, str | None]:
    content = body.get("content")
    if not isinstance(content, dict):
        raise MatrixError(400, "M_BAD_JSON", "'content' must be an object")
    event_type = body.get("type", "m.room.message")
    if not isinstance(event_type, str) or not event_type:
        raise MatrixError(400, "M_BAD_JSON", "'type' must be a string")
    state_key = body.get("state_key")
    if state_key is not None and not isinstance(state_key, str):
        raise MatrixError(400, "M_BAD_JSON", "'state_key' must be a string")
    return content, event_type, state_key


class _BroadcastJob:
    """Sends in batches; a per-(job, user) transaction record makes a resumed batch skip the users
    it already reached, so nobody gets the notice twice."""

    def __init__(self, service: ServerNoticeService) -> None:
        self.s = service

    async def step(self, job: Job) -> Step:
        s, params = self.s, job.params
        progress = dict(job.progress)
        if params["scope"] == "all":
            users = await s.store.list_local_user_ids(
                s.server_name, after=progress["after"], limit=BROADCAST_BATCH
            )
            if not users:
                return Step(progress, done=True)
            progress["after"] = users[-1]
            batch = [u for u in users if u != s.system_user]
        else:
            recipients: list[str] = params["recipients"]
            index = int(progress["index"])
            if index >= len(recipients):
                return Step(progress, done=True)
            batch = recipients[index : index + BROADCAST_BATCH]
            progress["index"] = index + len(batch)
        failed_users = list(progress.get("failed_users", []))
        for user_id in batch:
            if await s.store.get_notice_txn(job.job_id, user_id) is not None:
                continue  # reached before a restart
            try:
                event_id = await s.send_notice(
                    user_id, params["content"], params["type"], params["state_key"]
                )
            except MatrixError as exc:
                logger.warning("broadcast %s: could not notify %s: %s", job.job_id, user_id, exc)
                progress["failed"] = int(progress["failed"]) + 1
                if len(failed_users) < MAX_FAILED_LISTED:
                    failed_users.append(user_id)
                continue
            await s.store.insert_notice_txn(job.job_id, user_id, event_id, s.clock.time_ms())
            progress["sent"] = int(progress["sent"]) + 1
        progress["failed_users"] = failed_users
        return Step(progress)
