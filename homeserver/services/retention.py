"""Message retention (MSC1763, Synapse's `retention` config).

A room's policy is its `m.room.retention` state (`max_lifetime`, `min_lifetime`, in ms); a missing
field falls back to the server's `default_policy`. The effective `max_lifetime` is capped into
[`allowed_lifetime_min`, `allowed_lifetime_max`] (Synapse caps the same way when purging; we also
cap when hiding, so what clients see and what is purged agree).

Two halves:
- hiding: `cutoff(room_id)` gives the oldest `origin_server_ts` clients may still see; the
  visibility service drops older non-state events from every read path (/messages, /sync,
  /search, /context) even before the purge has run. State events are never subject to retention.
- purging: each `purge_jobs` entry runs every `interval` and submits one `retention_purge` job per
  room whose max_lifetime lies in (shortest_max_lifetime, longest_max_lifetime]. The job deletes
  expired non-state events in batches, with the events relating to them (edits, reactions), their
  search rows and push actions; then local media that no remaining event references. The room's
  latest event is kept (new events point at it), hidden but stored. With `export_dir` set, each
  batch is appended as JSON lines to `<export_dir>/<room_id>.jsonl` before it is deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from homeserver.config.sections import RetentionConfig, RetentionPurgeJob
from homeserver.core.clock import Clock
from homeserver.jobs.runner import JobRunner, Step
from homeserver.services.audit_sink import AuditSink
from homeserver.state.current import CurrentStateCache
from homeserver.storage.database import Connection
from homeserver.storage.stores.admin_rooms import AdminRoomStore
from homeserver.storage.stores.compliance import ComplianceStore
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.jobs import UNFINISHED, Job
from homeserver.storage.stores.search import SearchStore

logger = logging.getLogger(__name__)

RETENTION_PURGE = "retention_purge"
RETENTION = "m.room.retention"
EVENT_BATCH = 200
_MXC = re.compile(r"mxc://([^/\s\"']+)/([A-Za-z0-9_\-]+)")


@dataclass(frozen=True, slots=True)
class Policy:
    min_lifetime: int | None
    max_lifetime: int | None


def _lifetime(content: Any, key: str) -> int | None:
    value = content.get(key) if isinstance(content, dict) else None
    # Booleans are ints in Python; a policy value must be a real integer (ms).
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class MediaDeleter(Protocol):
    """What retention and erasure need of the media repository (homeserver/media/repository.py)."""

    async def delete_media(self, origin: str, media_id: str) -> bool: ...

    async def delete_user_media(self, user_id: str) -> int: ...


class RetentionService:
    def __init__(
        self,
        config: RetentionConfig,
        jobs: JobRunner,
        store: ComplianceStore,
        admin_store: AdminRoomStore,
        search: SearchStore,
        events: EventStore,
        state: CurrentStateCache,
        media: MediaDeleter,
        clock: Clock,
        *,
        server_name: str,
        audit: AuditSink,
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.forgotten_hooks: list[Callable[[list[str]], None]] = []
        self.store = store
        self.admin_store = admin_store
        self.search = search
        self.events = events
        self.state = state
        self.media = media
        self.clock = clock
        self.server_name = server_name
        self.audit = audit
        self._tasks: list[asyncio.Task[None]] = []
        jobs.register(RETENTION_PURGE, _RetentionPurgeJob(self))

    # -- policy --------------------------------------------------------------------------------------

    def policy_of(self, content: Any) -> Policy:
        """A room's policy from its m.room.retention content (None: no such event), with the
        server default filling what it leaves out (uncapped)."""
        min_lifetime = _lifetime(content, "min_lifetime")
        max_lifetime = _lifetime(content, "max_lifetime")
        return Policy(
            self.config.default_min_lifetime if min_lifetime is None else min_lifetime,
            self.config.default_max_lifetime if max_lifetime is None else max_lifetime,
        )

    async def policy(self, room_id: str) -> Policy:
        # The room's current state is cached in memory (and kept current by the persister).
        snapshot = await self.state.get(room_id)
        event = snapshot.get(RETENTION) if snapshot is not None else None
        return self.policy_of(event.content if event is not None else None)

    async def max_lifetime(self, room_id: str) -> int | None:
        """The effective max_lifetime (capped into the allowed range), None: keep forever."""
        if not self.config.enabled:
            return None
        return self._capped((await self.policy(room_id)).max_lifetime)

    def _capped(self, lifetime: int | None) -> int | None:
        if lifetime is None:
            return None
        if self.config.allowed_lifetime_min is not None:
            lifetime = max(lifetime, self.config.allowed_lifetime_min)
        if self.config.allowed_lifetime_max is not None:
            lifetime = min(lifetime, self.config.allowed_lifetime_max)
        return lifetime

    async def cutoff(self, room_id: str) -> int | None:
        """Non-state events with origin_server_ts below this are expired (hidden, then purged)."""
        lifetime = await self.max_lifetime(room_id)
        return None if lifetime is None else self.clock.time_ms() - lifetime

    # -- scheduling ----------------------------------------------------------------------------------

    def start(self) -> None:
        # (scheduled where the purges run: main, or the `run_background_tasks_on` worker)
        if not self.config.enabled or not self.jobs.runs(RETENTION_PURGE):
            return
        loop = asyncio.get_running_loop()
        for spec in self.config.purge_jobs:
            self._tasks.append(loop.create_task(self._every(spec), name="retention-purge"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()

    async def _every(self, spec: RetentionPurgeJob) -> None:
        while True:
            await asyncio.sleep(spec.interval / 1000)
            try:
                await self.schedule_purges(spec)
            except Exception:
                logger.exception("scheduling retention purges failed")

    @staticmethod
    def _in_range(spec: RetentionPurgeJob | None, lifetime: int) -> bool:
        if spec is None:
            return True
        if spec.shortest_max_lifetime is not None and lifetime <= spec.shortest_max_lifetime:
            return False
        return spec.longest_max_lifetime is None or lifetime <= spec.longest_max_lifetime

    async def schedule_purges(self, spec: RetentionPurgeJob | None = None) -> list[Job]:
        """Submit a purge job for every room with a policy in the spec's range (all rooms with a
        policy when None); a room whose previous purge is still running is skipped."""
        if not self.config.enabled:
            return []
        submitted = []
        running = {
            job.subject for job in await self.jobs.store.list_jobs(kind=RETENTION_PURGE, statuses=UNFINISHED)
        }
        contents = await self.store.list_retention_contents()
        # Without a default max_lifetime only rooms with their own policy can expire.
        if self.config.default_max_lifetime is None:
            room_ids = sorted(contents)
        else:
            room_ids = await self.store.list_room_ids()
        for room_id in room_ids:
            if room_id in running:
                continue
            lifetime = self._capped(self.policy_of(contents.get(room_id)).max_lifetime)
            if lifetime is None or not self._in_range(spec, lifetime):
                continue
            params = {"room_id": room_id, "before_ts": self.clock.time_ms() - lifetime}
            submitted.append(await self.jobs.submit(RETENTION_PURGE, params, subject=room_id))
        return submitted

    # -- the purge ------------------------------------------------------------------------------------

    def export_path(self, room_id: str) -> str | None:
        if not self.config.export_dir:
            return None
        # Room ids contain '!' and ':'; keep the file name portable.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", room_id)
        return os.path.join(self.config.export_dir, f"{name}.jsonl")

    def _export(self, room_id: str, rows: list[tuple[str, str]]) -> None:
        """Append (event_id, PDU JSON) rows as one JSON object per line: the PDU plus its event_id."""
        path = self.export_path(room_id)
        if path is None:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as out:
            for event_id, row in rows:
                record = {"event_id": event_id, **json.loads(row)}
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")

    def _local_media(self, rows: list[str]) -> list[str]:
        found: set[str] = set()
        for row in rows:
            for origin, media_id in _MXC.findall(row):
                if origin == self.server_name:
                    found.add(f"mxc://{origin}/{media_id}")
        return sorted(found)

    def delete_commit(self, event_ids: list[str]) -> Callable[[Connection], Any]:
        async def commit(conn: Connection) -> None:
            await self.search.delete_events_txn(conn, event_ids)
            await self.admin_store.delete_events_txn(conn, event_ids)

        return commit

    def forget(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            self.events.invalidate(event_id)
        for hook in self.forgotten_hooks:  # other processes' event caches (scaleout/setup.py)
            hook(event_ids)


class _RetentionPurgeJob:
    def __init__(self, service: RetentionService) -> None:
        self.s = service

    async def step(self, job: Job) -> Step:
        s, params, progress = self.s, job.params, dict(job.progress)
        room_id = params["room_id"]
        pending_media: list[str] = list(progress.get("media", []))
        if pending_media:
            # Media of the previous batch, whose events are now deleted: drop what nothing uses.
            deleted = 0
            for mxc in pending_media:
                if not await s.store.media_still_referenced(mxc, ()):
                    origin, media_id = mxc[len("mxc://") :].split("/", 1)
                    if await s.media.delete_media(origin, media_id):
                        deleted += 1
            progress["media"] = []
            progress["media_deleted"] = int(progress.get("media_deleted", 0)) + deleted
            return Step(progress)
        keep = await s.admin_store.latest_event(room_id)
        batch = await s.store.list_expired_batch(
            room_id,
            before_ts=int(params["before_ts"]),
            after=int(progress.get("after", 0)),
            keep=keep,
            limit=EVENT_BATCH,
        )
        if not batch:
            await s.audit.record(
                "retention.purge",
                actor=None,
                target=room_id,
                detail={"deleted": progress.get("deleted", 0), "before_ts": params["before_ts"]},
            )
            return Step(progress, done=True)
        ids = [event_id for event_id, _, _ in batch]
        in_batch = set(ids)
        related = [r for r in await s.store.list_related(room_id, ids, keep=keep) if r[0] not in in_batch]
        pairs = [(event_id, row) for event_id, _, row in batch] + related
        all_ids = [event_id for event_id, _ in pairs]
        rows = [row for _, row in pairs]
        s._export(room_id, pairs)
        progress.update(
            after=batch[-1][1],
            deleted=int(progress.get("deleted", 0)) + len(all_ids),
            media=s._local_media(rows),
        )
        return Step(progress, commit=s.delete_commit(all_ids), after=lambda: s.forget(all_ids))
