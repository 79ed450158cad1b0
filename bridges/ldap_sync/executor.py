"""Applying a plan, one action at a time, with progress. Each action is idempotent and each room
is recorded in the bridge's SQLite the moment it exists, so a run stopped anywhere is finished by
the next one (which re-plans from the server's state)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from appservices import MatrixRequestError

from .config import SyncConfig
from .homeserver import Homeserver
from .planner import Action, Plan
from .state import BridgeState

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


class ActionError(Exception):
    """An action done only in part, with what is left for a person to do."""


PARALLEL = frozenset({"create_user", "update_user", "join", "kick"})


class Executor:
    def __init__(
        self,
        hs: Homeserver,
        state: BridgeState,
        config: SyncConfig,
        rooms: dict[str, str],
        progress: Progress,
    ) -> None:
        self.hs = hs
        self.state = state
        self.config = config
        self.rooms = dict(rooms)  # key -> room id, grows as rooms are created
        self.progress = progress
        self.errors: list[str] = []
        self.done = 0
        self._total = self._index = 0
        self._last_report = 0.0

    async def run(self, plan: Plan) -> None:
        self._total = len(plan.actions)
        self._index = 0
        self._last_report = time.monotonic()
        # Actions of one kind that touch different accounts/memberships are independent: those
        # run `concurrency` at a time; room creation, links and power levels stay in order.
        for kind, group in itertools.groupby(plan.actions, key=lambda a: a.kind):
            actions = list(group)
            if kind in PARALLEL and self.config.concurrency > 1:
                sem = asyncio.Semaphore(self.config.concurrency)

                async def limited(action: Action, sem: asyncio.Semaphore = sem) -> None:
                    async with sem:
                        await self._one(action)

                async with asyncio.TaskGroup() as tasks:
                    for action in actions:
                        tasks.create_task(limited(action))
            else:
                for action in actions:
                    await self._one(action)

    async def _one(self, action: Action) -> None:
        try:
            await self.apply(action)
            self.done += 1
            outcome = ""
        except (MatrixRequestError, KeyError, ActionError) as exc:
            self.errors.append(f"{action.text}: {_describe(exc)}")
            outcome = f" FAILED ({_describe(exc)})"
        self._index += 1
        # every action when short; about every second when long
        now = time.monotonic()
        if self._total <= 200 or now - self._last_report >= 1 or self._index == self._total or outcome:
            width = len(str(self._total))
            self.progress(f"[{self._index:>{width}}/{self._total}] {action.text}{outcome}")
            self._last_report = now

    def _room(self, key: str) -> str:
        try:
            return self.rooms[key]
        except KeyError:
            raise KeyError(f"room for {key} was not created") from None

    async def apply(self, action: Action) -> None:
        d = action.detail
        hs = self.hs
        if action.kind == "create_user":
            # Recorded first: a crash right after the PUT still leaves the account managed.
            self.state.manage_users({action.target: d["dn"]})
            await self._put_user(action.target, d["body"])
        elif action.kind == "update_user":
            await self._put_user(action.target, d["body"])
        elif action.kind in ("create_space", "create_room"):
            room_id = await hs.create_room(action.target, d["name"], d["is_space"])
            self.rooms[action.target] = room_id
            self.state.set_room(action.target, room_id)
        elif action.kind == "rename":
            await hs.set_state(self._room(action.target), "m.room.name", "", {"name": d["name"]})
        elif action.kind == "link":
            child, parent = self._room(action.target), self._room(d["parent"])
            via = [self.config.homeserver.server_name]
            await hs.set_state(parent, "m.space.child", child, {"via": via})
            await hs.set_state(child, "m.space.parent", parent, {"via": via, "canonical": True})
        elif action.kind == "unlink":
            child, parent = self._room(action.target), self._room(d["parent"])
            await hs.set_state(parent, "m.space.child", child, {})
            await hs.set_state(child, "m.space.parent", parent, {})
        elif action.kind == "join":
            await hs.force_join(self._room(action.target), d["user_id"])
        elif action.kind == "kick":
            await hs.kick(self._room(action.target), d["user_id"], "No longer in this group in the directory")
        elif action.kind == "power":
            await self._power(self._room(action.target), d["users"])
        elif action.kind == "deactivate":
            await self._deactivate(action.target, bool(d["erase"]))
        else:  # pragma: no cover - the planner only makes the kinds above
            raise ValueError(action.kind)

    async def _put_user(self, user_id: str, body: dict[str, Any]) -> None:
        try:
            await self.hs.put_user(user_id, body)
        except MatrixRequestError as exc:
            if exc.errcode != "M_THREEPID_IN_USE" or "threepids" not in body:
                raise
            # The rest of the change (the account itself, its name) must not wait for a person to
            # sort out whose address it is; the address is reported at every run until then.
            rest = {k: v for k, v in body.items() if k != "threepids"}
            if rest:
                await self.hs.put_user(user_id, rest)
            emails = ", ".join(t["address"] for t in body["threepids"])
            raise ActionError(
                f"{emails} belongs to another account; {user_id} was saved without it"
            ) from None

    async def _power(self, room_id: str, changes: dict[str, int | None]) -> None:
        # Re-read: someone may have changed other entries since the plan was made.
        state = await self.hs.room_state(room_id)
        content: dict[str, Any] = dict(state.power_levels) if state else {}
        users = dict(content.get("users") or {})
        for uid, level in changes.items():
            if level is None:
                users.pop(uid, None)
            else:
                users[uid] = level
        content["users"] = users
        await self.hs.set_state(room_id, "m.room.power_levels", "", content)

    async def _deactivate(self, user_id: str, erase: bool) -> None:
        successor = self.config.leavers.handover_to
        if successor is not None:
            await self._hand_over(user_id, successor)
        await self.hs.deactivate(user_id, erase)
        self.state.mark_deactivated(user_id)

    async def _hand_over(self, user_id: str, successor: str) -> None:
        """Rooms the leaver administers (highest level among members, none of our own rooms)
        get the successor raised to that level before the leaver's account goes."""
        ours = set(self.rooms.values())
        for room_id in await self.hs.user_joined_rooms(user_id):
            if room_id in ours:
                continue  # the bot administers those
            state = await self.hs.room_state(room_id)
            if state is None:
                continue
            levels = state.levels
            default = int(state.power_levels.get("users_default", 0) or 0)
            mine = levels.get(user_id, default)
            joined_others = [u for u, m in state.members.items() if m == "join" and u != user_id]
            top_other = max((levels.get(u, default) for u in joined_others), default=default)
            if mine > top_other and levels.get(successor, default) < mine:
                await self.hs.make_room_admin(room_id, successor)
                self.progress(f"        handed {room_id} over to {successor}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, MatrixRequestError):
        body = exc.body if isinstance(exc.body, dict) else {}
        return f"{exc.status} {body.get('errcode', '')} {body.get('error', '')}".strip()
    return str(exc.args[0] if exc.args else exc)
