"""The background job runner.

A job is a row in `jobs` (kind, params, status, progress) plus a handler registered for its kind.
The runner calls `handler.step(job)` again and again; each call does one bounded batch of work and
returns the new progress, which is saved before the next batch starts, with a yield to the event
loop in between. A batch never holds a room lock or a transaction across batches, so a job of any
size leaves the server responsive.

Resumption: at start the runner picks up every `scheduled` or `active` job and continues it from
its saved progress. A handler makes that exactly-once either by returning its batch's database work
as `Step.commit` (run in the same transaction as the progress update, so a batch is applied
together with its progress or not at all) or by making its batches idempotent (re-reading what is
left to do: e.g. "kick whoever is still joined").
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.storage.database import Connection
from homeserver.storage.stores.jobs import ACTIVE, COMPLETE, FAILED, UNFINISHED, Job, JobStore

logger = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_letters


def new_job_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one batch: the job's new progress, and whether it is finished."""

    progress: dict[str, Any]
    done: bool = False
    # Database work of this batch, committed in the same transaction as `progress`.
    commit: Callable[[Connection], Awaitable[None]] | None = None
    # Run once the progress is saved (e.g. dropping caches of what the batch deleted).
    after: Callable[[], None] | None = None


class JobHandler(Protocol):
    async def step(self, job: Job) -> Step:
        """Do one bounded batch of `job` from `job.progress`; never loop over the whole job."""
        ...


class JobFailed(Exception):
    """Raised by a handler to fail its job with a message for the status endpoint."""


@dataclass
class JobRunner:
    store: JobStore
    clock: Clock
    # At most this many jobs progress at the same time; the others wait their turn (`scheduled`).
    concurrency: int = 2
    handlers: dict[str, JobHandler] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[Job]] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None
    _running: bool = False
    # False in processes that do not run jobs (workers); jobs wait for the main process.
    enabled: bool = True
    # Which kinds this process runs (None: all but `excluded_kinds`): with
    # `run_background_tasks_on` the background worker runs the kinds that send no events and
    # main the others (container.py).
    kinds: frozenset[str] | None = None
    excluded_kinds: frozenset[str] = frozenset()
    # Called after each saved batch (tests use it to stop a runner mid-way).
    batch_hooks: list[Callable[[Job], None]] = field(default_factory=list)

    def register(self, kind: str, handler: JobHandler) -> None:
        self.handlers[kind] = handler

    def runs(self, kind: str) -> bool:
        """Whether this process runs jobs of `kind` (another one may, on the same database)."""
        if not self.enabled or kind in self.excluded_kinds:
            return False
        return self.kinds is None or kind in self.kinds

    async def start(self) -> None:
        """Resume every unfinished job from its saved progress."""
        if not self.enabled:
            return
        self._running = True
        self._slots = asyncio.Semaphore(self.concurrency)
        for job in await self.store.list_jobs(statuses=UNFINISHED):
            if not self.runs(job.kind):
                continue  # another process's
            if job.kind not in self.handlers:
                logger.warning("job %s of unknown kind %s left as %s", job.job_id, job.kind, job.status)
                continue
            logger.info("resuming %s job %s (%s)", job.kind, job.job_id, job.status)
            self._spawn(job)

    async def stop(self) -> None:
        """Stop between (or inside) batches; unfinished jobs stay in the database for the next start."""
        self._running = False
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()

    async def submit(
        self,
        kind: str,
        params: dict[str, Any],
        *,
        subject: str | None = None,
        progress: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> Job:
        if kind not in self.handlers:
            raise ValueError(f"no handler for job kind {kind!r}")
        job = await self.store.insert_job(
            job_id or new_job_id(), kind, subject, params, progress or {}, self.clock.time_ms()
        )
        if self._running and self.runs(kind):
            self._spawn(job)
        return job

    async def get(self, job_id: str) -> Job | None:
        return await self.store.get_job(job_id)

    async def wait(self, job_id: str) -> Job:
        """The job once finished (for synchronous endpoints such as DELETE /v1/rooms)."""
        task = self._tasks.get(job_id)
        if task is not None:
            return await asyncio.shield(task)
        job = await self.store.get_job(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def running(self) -> list[str]:
        return list(self._tasks)

    def _spawn(self, job: Job) -> None:
        if job.job_id in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self._run(job), name=f"job-{job.kind}-{job.job_id}")
        self._tasks[job.job_id] = task
        job_id = job.job_id

        def forget(_task: asyncio.Task[Job]) -> None:
            self._tasks.pop(job_id, None)

        task.add_done_callback(forget)

    async def _run(self, job: Job) -> Job:
        assert self._slots is not None
        handler = self.handlers[job.kind]
        async with self._slots:
            if job.status != ACTIVE:
                await self.store.save_progress(job.job_id, ACTIVE, job.progress, self.clock.time_ms())
                job = _with(job, status=ACTIVE)
            while True:
                try:
                    step, now = await self._batch(handler, job)
                except asyncio.CancelledError:
                    raise
                except (JobFailed, MatrixError) as exc:
                    return await self._fail(job, str(exc) if isinstance(exc, JobFailed) else exc.error)
                except Exception as exc:  # a bug or a database error: fail the job, keep the server
                    logger.exception("%s job %s failed", job.kind, job.job_id)
                    return await self._fail(job, f"{type(exc).__name__}: {exc}")
                job = _with(
                    job, status=COMPLETE if step.done else ACTIVE, progress=step.progress, updated_ts=now
                )
                for hook in self.batch_hooks:
                    hook(job)
                if step.done:
                    logger.info("%s job %s complete", job.kind, job.job_id)
                    return _with(job, completed_ts=now)
                # Let requests run between batches.
                await asyncio.sleep(0)

    async def _batch(self, handler: JobHandler, job: Job) -> tuple[Step, int]:
        """One batch: the handler's work, then its commit and the new progress in one transaction."""
        step = await handler.step(job)
        status = COMPLETE if step.done else ACTIVE
        now = self.clock.time_ms()
        if step.commit is not None:
            async with self.store.db.transaction() as conn:
                await step.commit(conn)
                await self.store.save_progress_txn(conn, job.job_id, status, step.progress, now)
        else:
            await self.store.save_progress(job.job_id, status, step.progress, now)
        if step.after is not None:
            step.after()
        return step, now

    async def _fail(self, job: Job, error: str) -> Job:
        now = self.clock.time_ms()
        await self.store.save_progress(job.job_id, FAILED, job.progress, now, error)
        return _with(job, status=FAILED, error=error, updated_ts=now, completed_ts=now)


def _with(job: Job, **changes: Any) -> Job:
    return replace(job, **changes)
