"""Push-rule evaluation at persistence time, unread counts and the notifications list.

For every persisted event, each local joined member's push rules are evaluated (inside the event
transaction, so counts and events commit together); members whose actions notify get a row in
event_push_actions (written to its staging table and folded in bulk every `FOLD_ROWS` rows: see
storage/stores/push_actions.py). A user's read receipt marks rows read. /sync reports the unread
rows per room (and per thread) as `unread_notifications` / `unread_thread_notifications`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.core import json as hjson
from homeserver.core.clock import Clock
from homeserver.core.streams import StreamRow
from homeserver.events import constants as c
from homeserver.events.auth import get_power_levels_content, user_power_level
from homeserver.metrics.caches import register_cache
from homeserver.metrics.usage import Measure
from homeserver.persist.persister import PersistedEvent
from homeserver.push.evaluator import evaluate_members
from homeserver.services.push_rules import PushRulesService
from homeserver.storage.database import Connection
from homeserver.storage.stores.push_actions import PushActionStore, UnreadCount

logger = logging.getLogger(__name__)

MAIN_THREAD = "main"
# (user_id, event_id, room_id, stream_ordering, thread_id, actions json, highlight, created_ts)
ActionRow = tuple[str, str, str, int, str, str, bool, int]


def thread_of(content: Any) -> str:
    relates = content.get("m.relates_to") if isinstance(content, dict) else None
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        target = relates.get("event_id")
        if isinstance(target, str):
            return target
    return MAIN_THREAD


def _notifies(actions: list[Any]) -> tuple[bool, bool]:
    notify = any(a == "notify" for a in actions)
    highlight = any(
        isinstance(a, dict) and a.get("set_tweak") == "highlight" and a.get("value", True) is not False
        for a in actions
    )
    return notify, highlight


# id(actions) -> (the list, notify, highlight, JSON). The evaluator hands out shared (interned)
# action lists, so in a big room most members' outcomes are one of a few lists: classify and
# encode each once, not once per member. The list is kept in the entry so its id stays unique.
_OUTCOMES: dict[int, tuple[list[Any], bool, bool, str]] = {}


def _outcome(actions: list[Any]) -> tuple[bool, bool, str]:
    entry = _OUTCOMES.get(id(actions))
    if entry is None or entry[0] is not actions:
        if len(_OUTCOMES) > 10_000:
            _OUTCOMES.clear()
        notify, highlight = _notifies(actions)
        entry = _OUTCOMES[id(actions)] = (actions, notify, highlight, hjson.dumps_str(actions))
    return entry[1], entry[2], entry[3]


class NotificationService:
    CACHE_SIZE = 200_000
    # Staged notification rows moved into event_push_actions at once: the bigger the batch, the
    # more of a user's new rows share an index page (one event of a 300-member room staged costs
    # ~1 ms CPU instead of ~17 ms written per user; the fold of 10,000 rows ~0.1 s, on SQLite).
    # Readers scan the staging table without a per-user index, so it must stay small.
    FOLD_ROWS = 10_000

    def __init__(self, store: PushActionStore, push_rules: PushRulesService, clock: Clock, server_name: str):
        self.store = store
        self.push_rules = push_rules
        self.clock = clock
        self.local_suffix = ":" + server_name
        # (user_id, room_id) -> unread counts per thread. An entry is dropped when the counts may
        # have changed (a notifying event committed, a receipt, the user's own event); the next
        # read recounts that one room. The epoch stops a recount that raced a change from storing.
        self._counts: OrderedDict[tuple[str, str], list[UnreadCount]] = OrderedDict()
        # room -> users with cached counts there (a worker drops a room's counts on new events)
        self._room_users: dict[str, set[str]] = {}
        self._metric = register_cache(
            "get_unread_event_push_actions_by_room_for_user", self, lambda s: len(s._counts), self.CACHE_SIZE
        )
        self._epoch = 0
        self._writing = False
        self._pending: list[ActionRow] = []
        self._touched: set[tuple[str, str]] = set()
        self._staged: int | None = None  # rows in the staging table (None: not counted yet)

    # -- persistence -----------------------------------------------------------------------------

    async def on_batch(self, conn: Connection, persisted: Sequence[PersistedEvent]) -> None:
        """Persister batch hook: evaluate and store push actions in the event transaction."""
        # From here until on_events, recounts read a database that may or may not hold this
        # batch: they must not be cached (on_events adds the batch to cached counts itself).
        self._writing = True
        self._epoch += 1
        self._pending = []
        self._touched.clear()
        rows: list[ActionRow] = []
        now = self.clock.time_ms()
        for p in persisted:
            try:
                rows.extend(await self._evaluate(p, now))
            except Exception:  # a push rule problem must never stop messages being stored
                logger.exception("push rule evaluation failed for %s", p.event.event_id)
        if rows:
            await self.store.insert_txn(conn, rows)
            self._pending = rows
            await self._maybe_fold(conn, len(rows))
        # Sending an event counts as reading the room up to it (spec: "Receiving notifications").
        senders = {(p.event.sender, p.event.room_id): p.stream_ordering for p in persisted}
        for (sender, room_id), position in senders.items():
            if sender.endswith(self.local_suffix):
                await self.store.mark_read_txn(conn, sender, room_id, position)
                self._touched.add((sender, room_id))

    async def _maybe_fold(self, conn: Connection, added: int) -> None:
        """Fold the staged rows into event_push_actions once there are FOLD_ROWS of them (in this
        transaction: a rolled-back batch leaves the count high, which only folds earlier)."""
        if self._staged is None:  # first batch since start: count what the last run left, and ours
            # (in this transaction: a second pool connection could wait on this one's locks)
            self._staged = await self.store.staged_count_txn(conn)
        else:
            self._staged += added
        if self._staged >= self.FOLD_ROWS:
            await self.store.fold_txn(conn)
            self._staged = 0

    async def _evaluate(self, p: PersistedEvent, now: int) -> list[ActionRow]:
        event = p.event
        snapshot = p.state_before
        members = [
            u for u, m in snapshot.memberships.items() if m == c.JOIN and u.endswith(self.local_suffix)
        ]
        invited = event.state_key if event.type == c.MEMBER and event.membership == c.INVITE else None
        if invited is not None and invited.endswith(self.local_suffix):
            members.append(invited)
        members = [u for u in members if u != event.sender]
        if not members:
            return []
        evaluators = await self.push_rules.evaluators_for(members)
        state = snapshot.state
        power_levels = get_power_levels_content(state) or {}
        names: dict[str, str | None] = {}
        for user_id in members:
            member_event = state.get((c.MEMBER, user_id))
            name = member_event.content.get("displayname") if member_event is not None else None
            names[user_id] = name if isinstance(name, str) else None
        with Measure("evaluate_push_rules"):
            matched = evaluate_members(
                event.pdu,
                ((u, names[u], evaluators[u]) for u in members),
                room_member_count=sum(1 for m in snapshot.memberships.values() if m == c.JOIN),
                sender_power_level=user_power_level(event.sender, state),
                notification_power_levels=power_levels.get("notifications"),
            )
        thread_id = thread_of(event.content)
        rows: list[ActionRow] = []
        event_id, room_id, position = event.event_id, event.room_id, p.stream_ordering
        for user_id, actions in matched:
            notify, highlight, encoded = _outcome(actions)
            if notify:
                rows.append((user_id, event_id, room_id, position, thread_id, encoded, highlight, now))
        return rows

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Events stream consumer (after the commit of the batch `on_batch` saw): add the new
        notifications to cached counts (no recount per woken sync)."""
        for user_id, _event_id, room_id, _pos, thread_id, _actions, highlight, _ts in self._pending:
            key = (user_id, room_id)
            counts = self._counts.get(key)
            if counts is None:
                continue
            updated = [c for c in counts if c.thread_id != thread_id]
            old = next((c for c in counts if c.thread_id == thread_id), None)
            updated.append(
                UnreadCount(
                    room_id,
                    thread_id,
                    (old.notifications if old else 0) + 1,
                    (old.highlights if old else 0) + (1 if highlight else 0),
                )
            )
            self._counts[key] = updated
        self._pending = []
        for key in self._touched:
            self._invalidate(key)
        self._touched.clear()
        self._writing = False
        self._epoch += 1

    def on_batch_failed(self) -> None:
        """The transaction `on_batch` joined was rolled back: forget what it planned."""
        self._pending = []
        self._touched.clear()
        self._writing = False
        self._epoch += 1

    def _invalidate(self, key: tuple[str, str]) -> None:
        if self._counts.pop(key, None) is not None:
            self._metric.evicted_invalidation += 1
        self._epoch += 1

    # -- reading ---------------------------------------------------------------------------------

    async def room_counts(self, user_id: str, room_id: str) -> list[UnreadCount]:
        """Unread counts of one user in one room, per thread (cheap when unchanged)."""
        key = (user_id, room_id)
        counts = self._counts.get(key)
        if counts is not None:
            self._metric.hits += 1
        else:
            self._metric.misses += 1
            epoch = self._epoch
            counts = await self.store.room_unread_counts(user_id, room_id)
            if self._epoch == epoch and not self._writing:
                self._counts[key] = counts
                self._room_users.setdefault(room_id, set()).add(user_id)
                if len(self._counts) > self.CACHE_SIZE:
                    self._counts.popitem(last=False)
                    self._metric.evicted_size += 1
        return counts

    def forget_room(self, room_id: str) -> None:
        """Scale-out: main committed events in the room; a worker recounts on the next read."""
        for user_id in self._room_users.pop(room_id, ()):
            self._invalidate((user_id, room_id))

    def forget(self, user_id: str, room_id: str) -> None:
        """Scale-out: the user's read position moved on main (after its mark_read)."""
        self._invalidate((user_id, room_id))
    async def warm(self, user_id: str, room_ids: Iterable[str]) -> None:
        """Fill the count cache for many rooms of one user with one query instead of one per room
        (an initial sync). Nothing is cached if a write raced the read (same rule as room_counts)."""
        missing = [r for r in room_ids if (user_id, r) not in self._counts]
        if len(missing) < 2:
            return
        epoch = self._epoch
        counts = await self.store.user_unread_counts(user_id)
        if self._epoch != epoch or self._writing:
            return
        by_room: dict[str, list[UnreadCount]] = {r: [] for r in missing}
        for count in counts:
            if count.room_id in by_room:
                by_room[count.room_id].append(count)
        for room_id, room_counts in by_room.items():
            self._counts[(user_id, room_id)] = room_counts
            self._room_users.setdefault(room_id, set()).add(user_id)  # for forget_room (workers)
            self._metric.misses += 1
            if len(self._counts) > self.CACHE_SIZE:
                self._counts.popitem(last=False)
                self._metric.evicted_size += 1

    async def mark_read(self, user_id: str, room_id: str, upto: int, thread_id: str | None) -> None:
        await self.store.mark_read(user_id, room_id, upto, thread_id)
        self._invalidate((user_id, room_id))
