"""One sync run: read the whole directory, read the homeserver, plan, then (unless dry-run) apply.

Nothing is changed before both reads have succeeded: LDAP down, a bad bind or an empty directory
where accounts are managed abort the run with `SyncAborted` and the homeserver as it was."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp

from appservices import MatrixRequestError, load_registration

from .config import SyncConfig
from .directory import Directory, DirectoryError, DirectoryReader
from .executor import Executor, Progress
from .homeserver import Homeserver, HomeserverError, RoomState, UserState
from .model import Desired, build_desired
from .planner import Current, Plan, make_plan
from .state import BridgeState

logger = logging.getLogger(__name__)
T = TypeVar("T")


class SyncAborted(Exception):
    """The run stopped before changing anything (or, for the homeserver going away mid-run,
    stopped where it was; the next run finishes)."""


@dataclass
class RunResult:
    plan: Plan
    applied: int = 0
    errors: list[str] = field(default_factory=list)


def _print(line: str) -> None:
    print(line, flush=True)


async def _gather_limited(n: int, jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    sem = asyncio.Semaphore(n)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def read_directory(config: SyncConfig) -> Directory:
    return DirectoryReader(config).read()


async def run_once(
    config: SyncConfig,
    *,
    dry_run: bool = False,
    progress: Progress = _print,
) -> RunResult:
    try:
        registration = load_registration(config.homeserver.registration)
    except (OSError, ValueError) as exc:
        raise SyncAborted(f"cannot load the appservice registration: {exc}") from None
    if not isinstance(registration.get("sender_localpart"), str):
        raise SyncAborted(f"{config.homeserver.registration}: no sender_localpart (the bot's localpart)")
    bot_id = f"@{registration['sender_localpart']}:{config.homeserver.server_name}"
    try:
        directory = await asyncio.to_thread(read_directory, config)
    except DirectoryError as exc:
        raise SyncAborted(f"{exc}; nothing was changed") from None
    progress(
        f"directory: {len(directory.people)} people, {len(directory.units)} units, "
        f"{len(directory.groups)} groups ({len(directory.skipped)} people skipped)"
    )
    desired = build_desired(directory, config)
    db_path = config.state_db
    # A dry run never creates the bridge's file (one stat, before any network I/O).
    exists = Path(db_path).exists()  # noqa: ASYNC240
    try:
        state = BridgeState(db_path if (not dry_run or exists) else ":memory:")
    except sqlite3.Error as exc:
        raise SyncAborted(f"cannot open state_db {db_path}: {exc}; nothing was changed") from None
    hs = Homeserver(config.homeserver.url, registration["as_token"], bot_id)
    try:
        return await _run(config, desired, directory, state, hs, bot_id, dry_run, progress)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SyncAborted(f"homeserver {config.homeserver.url} unreachable: {exc!r}") from None
    except MatrixRequestError as exc:
        raise SyncAborted(f"homeserver refused a request while reading: {exc}") from None
    except HomeserverError as exc:
        raise SyncAborted(str(exc)) from None
    finally:
        await hs.close()
        state.close()


async def _run(
    config: SyncConfig,
    desired: Desired,
    directory: Directory,
    state: BridgeState,
    hs: Homeserver,
    bot_id: str,
    dry_run: bool,
    progress: Progress,
) -> RunResult:
    if dry_run:
        if not await hs.bot_is_admin():
            if config.homeserver.admin_access_token is None:
                raise HomeserverError(
                    f"the sync's bot {bot_id} is not a server admin yet (a real run with "
                    "homeserver.admin_access_token makes it one)"
                )
            hs.read_with(config.homeserver.admin_access_token)
    else:
        await hs.ensure_bot_admin(config.homeserver.admin_access_token)

    managed = state.managed_users()
    if not directory.people and managed:
        raise SyncAborted(
            f"the directory returned no people but {len(managed)} accounts are managed: refusing to "
            "deactivate them all (check users.base and users.filter); nothing was changed"
        )

    # Rooms: the recorded mapping, verified; rooms missing from it are looked for among the bot's
    # rooms by the key in their create event (a crash right after createRoom).
    rooms: dict[str, str] = {}
    states: dict[str, RoomState] = {}
    recorded = state.rooms()
    found = await _gather_limited(
        config.concurrency,
        [lambda rid=rid: hs.room_state(rid) for rid in recorded.values()],  # type: ignore[misc]
    )
    for (key, room_id), room in zip(recorded.items(), found, strict=True):
        if room is None or room.members.get(bot_id) != "join":
            logger.warning("room %s for %s is gone or the bot left it; a new one is made", room_id, key)
            if not dry_run:
                state.forget_room(key)
            continue
        rooms[key], states[room_id] = room_id, room
    if any(key not in rooms for key in desired.rooms):
        known = set(rooms.values())
        for room_id in await hs.bot_rooms():
            if room_id in known:
                continue
            room = await hs.room_state(room_id)
            if room is not None and room.key and room.key not in rooms:
                rooms[room.key], states[room_id] = room_id, room
                progress(f"found {room.key} in {room_id} (not recorded: an earlier run stopped)")
                if not dry_run:
                    state.set_room(room.key, room_id)

    user_ids = sorted(set(desired.users) | set(managed))
    users_found = await _gather_limited(
        config.concurrency,
        [lambda uid=uid: hs.get_user(uid) for uid in user_ids],  # type: ignore[misc]
    )
    users: dict[str, UserState] = dict(zip(user_ids, users_found, strict=True))
    plan = make_plan(desired, Current(users, managed, rooms, states), config, bot_id)
    for warning in plan.warnings:
        progress(f"warning: {warning}")
    result = RunResult(plan)

    leaving = plan.counts()["deactivate"]
    limit = config.leavers.max_per_run
    if limit is not None and leaving > limit and not dry_run:
        raise SyncAborted(
            f"{leaving} accounts would be deactivated, more than leavers.max_per_run ({limit}): "
            "check the directory and the filters (--dry-run lists them), or raise the limit; "
            "nothing was changed"
        )
    if dry_run:
        for action in plan.actions:
            progress(f"  {action.kind:<12} {action.text}")
        progress(plan.summary() + " (dry run: nothing changed)")
        return result

    # Bookkeeping: directory people who already have accounts are managed from now on; managed
    # accounts that are gone or already deactivated need no more work.
    state.manage_users({uid: u.dn for uid, u in desired.users.items() if users[uid].exists})
    for uid in managed:
        if uid not in desired.users and (not users[uid].exists or users[uid].deactivated):
            state.mark_deactivated(uid)

    progress(plan.summary())
    run_id = state.start_run()
    executor = Executor(hs, state, config, rooms, progress)
    try:
        await executor.run(plan)
    finally:
        state.finish_run(run_id, executor.done, len(executor.errors))
    result.applied, result.errors = executor.done, executor.errors
    progress(f"done: {executor.done} applied, {len(executor.errors)} failed")
    return result
