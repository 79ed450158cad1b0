"""Background jobs: a job stopped mid-way resumes from its saved progress after a restart and
completes exactly once (each batch's rows commit together with its progress); failures are
recorded; finished jobs are not run again. On both engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.jobs.runner import JobRunner, Step
from homeserver.storage.database import Connection, Database
from homeserver.storage.migrations import migrate
from homeserver.storage.stores.jobs import ACTIVE, COMPLETE, FAILED, Job, JobStore

TOTAL = 100
BATCH = 10


class CountingJob:
    """Writes items 0..TOTAL-1 into job_test_items, BATCH per step; optionally stalls (forever)
    when it reaches `stall_at`, so that the test can stop the runner there."""

    def __init__(self, stall_at: int | None = None) -> None:
        self.stall_at = stall_at
        self.stalled = asyncio.Event()
        self.finished_steps = 0

    async def step(self, job: Job) -> Step:
        start = int(job.progress.get("next", 0))
        if self.stall_at is not None and start >= self.stall_at:
            self.stalled.set()
            await asyncio.Event().wait()  # until cancelled by JobRunner.stop()
        end = min(start + BATCH, TOTAL)
        items = list(range(start, end))

        async def commit(conn: Connection) -> None:
            await conn.executemany("INSERT INTO job_test_items (item) VALUES ($1)", [(i,) for i in items])

        done = end >= TOTAL
        if done:
            self.finished_steps += 1
        return Step({"next": end}, done=done, commit=commit)


class FailingJob:
    async def step(self, job: Job) -> Step:
        if job.progress.get("n", 0) >= 2:
            raise MatrixError(400, "M_UNKNOWN", "Users are still joined to this room")
        return Step({"n": int(job.progress.get("n", 0)) + 1})


@pytest.fixture
async def jobs_db(db: Database) -> AsyncIterator[Database]:
    await migrate(db)
    await db.execute("CREATE TABLE job_test_items (item INTEGER PRIMARY KEY)")
    yield db


async def _items(db: Database) -> list[int]:
    return [int(r[0]) for r in await db.fetch("SELECT item FROM job_test_items ORDER BY item")]


def _runner(db: Database, handler: Any, kind: str = "count") -> JobRunner:
    runner = JobRunner(JobStore(db), Clock())
    runner.register(kind, handler)
    return runner


async def test_interrupted_job_resumes_and_completes_exactly_once(jobs_db: Database) -> None:
    first = CountingJob(stall_at=40)
    runner = _runner(jobs_db, first)
    await runner.start()
    job = await runner.submit("count", {"what": "items"}, subject="!room:test.local", progress={"next": 0})
    await first.stalled.wait()
    await runner.stop()  # the "crash": mid-job, inside a batch

    stored = await JobStore(jobs_db).get_job(job.job_id)
    assert stored is not None and stored.status == ACTIVE, stored
    assert stored.progress == {"next": 40}, stored
    assert await _items(jobs_db) == list(range(40))

    second = CountingJob()
    restarted = _runner(jobs_db, second)
    await restarted.start()
    assert restarted.running() == [job.job_id]
    done = await restarted.wait(job.job_id)
    assert done.status == COMPLETE, done
    assert await _items(jobs_db) == list(range(TOTAL))  # no item twice (PRIMARY KEY), none missing
    assert second.finished_steps == 1 and first.finished_steps == 0

    stored = await JobStore(jobs_db).get_job(job.job_id)
    assert stored is not None and stored.status == COMPLETE and stored.completed_ts is not None, stored
    assert stored.params == {"what": "items"} and stored.subject == "!room:test.local", stored
    await restarted.stop()

    # A finished job is not picked up again.
    third = CountingJob()
    again = _runner(jobs_db, third)
    await again.start()
    assert again.running() == []
    await again.stop()
    assert third.finished_steps == 0 and await _items(jobs_db) == list(range(TOTAL))


async def test_failed_job_records_the_error(jobs_db: Database) -> None:
    runner = _runner(jobs_db, FailingJob(), kind="fail")
    await runner.start()
    job = await runner.submit("fail", {})
    done = await runner.wait(job.job_id)
    assert done.status == FAILED and done.error == "Users are still joined to this room", done
    stored = await JobStore(jobs_db).get_job(job.job_id)
    assert stored is not None and stored.status == FAILED and stored.progress == {"n": 2}, stored
    listed = await JobStore(jobs_db).list_jobs(kind="fail", statuses=(FAILED,))
    assert [j.job_id for j in listed] == [job.job_id]
    await runner.stop()


async def test_jobs_wait_their_turn_and_all_finish(jobs_db: Database) -> None:
    class Tiny:
        async def step(self, job: Job) -> Step:
            n = int(job.progress.get("n", 0)) + 1
            return Step({"n": n}, done=n >= 3)

    runner = JobRunner(JobStore(jobs_db), Clock(), concurrency=1)
    runner.register("tiny", Tiny())
    await runner.start()
    jobs = [await runner.submit("tiny", {"i": i}) for i in range(4)]
    finished = [await runner.wait(j.job_id) for j in jobs]
    assert [j.status for j in finished] == [COMPLETE] * 4
    assert [j.progress for j in finished] == [{"n": 3}] * 4
    await runner.stop()
