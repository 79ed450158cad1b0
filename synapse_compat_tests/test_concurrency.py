"""Concurrency: many clients sending into one room at once, with retried (and concurrently
duplicated) transaction ids, while every member syncs.

Checks: each (device, txn id) yields exactly one event; the room ends up with exactly
20 x 50 distinct messages; every member receives them through /sync in one and the same order,
which is also the order /messages returns; each sender's messages keep their send order.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

from .harness import (
    Homeserver,
    User,
    create_room,
    join_room,
    joined_room,
    new_txn_id,
    paginate,
    send_text,
    sync_once,
)

SENDERS = 20
PER_SENDER = 50
TOTAL = SENDERS * PER_SENDER
DEADLINE = 300.0

SYNC_FILTER: dict[str, Any] = {
    "room": {
        "timeline": {"limit": 100, "types": ["m.room.message"]},
        "state": {"types": []},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
    "presence": {"types": []},
    "account_data": {"types": []},
}
MESSAGE_FILTER = {"types": ["m.room.message"]}


def body_of(sender_index: int, n: int) -> str:
    return f"compat-load {sender_index}:{n}"


def send_all(user: User, room_id: str, index: int) -> list[str]:
    """Send PER_SENDER messages in order. Every 10th is sent twice at the same moment with the
    same txn id; every 10th+5 is retried after it succeeded. Returns the event ids in order."""
    event_ids: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as dup_pool:
        for n in range(PER_SENDER):
            text = body_of(index, n)
            txn = new_txn_id()
            if n % 10 == 0:
                futures = [dup_pool.submit(send_text, user, room_id, text, txn) for _ in range(2)]
                first, second = (f.result() for f in futures)
                assert first == second, f"concurrent duplicate of txn {txn} gave {first} and {second}"
                event_id = first
            else:
                event_id = send_text(user, room_id, text, txn_id=txn)
                if n % 10 == 5:
                    assert send_text(user, room_id, text, txn_id=txn) == event_id
            event_ids.append(event_id)
    return event_ids


def collect_via_sync(user: User, room_id: str, since: str, stop: threading.Event) -> list[dict[str, Any]]:
    """Incremental syncs from ``since`` until TOTAL messages came down; gaps of limited
    timelines are filled from /messages (prev_batch back to the previous token)."""
    events: list[dict[str, Any]] = []
    token = since
    end = time.monotonic() + DEADLINE
    while len(events) < TOTAL:
        assert time.monotonic() < end, f"{user.user_id}: only {len(events)} of {TOTAL} messages via /sync"
        if stop.is_set():  # the senders failed; do not wait for messages that will not come
            return events
        body = sync_once(user, since=token, timeout=10000, filter=SYNC_FILTER)
        room = joined_room(body, room_id)
        if room is not None:
            timeline = room["timeline"]
            if timeline.get("limited"):
                gap = paginate(
                    user,
                    room_id,
                    dir="b",
                    limit=100,
                    to=token,
                    filter=MESSAGE_FILTER,
                    **{"from": timeline["prev_batch"]},
                )
                events.extend(reversed(gap))
            events.extend(timeline["events"])
        token = body["next_batch"]
    return events


def test_concurrent_senders(hs: Homeserver) -> None:
    owner = hs.register()
    room_id = create_room(owner, preset="public_chat", name="load")
    members = [hs.register() for _ in range(SENDERS)]
    for member in members:
        join_room(member, room_id)
    everyone = [owner, *members]
    # Each member's starting point: after all the joins.
    tokens = {u.user_id: sync_once(u, filter=SYNC_FILTER)["next_batch"] for u in everyone}

    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(everyone) + SENDERS) as pool:
        syncs = {
            u.user_id: pool.submit(collect_via_sync, u, room_id, tokens[u.user_id], stop) for u in everyone
        }
        sends = [pool.submit(send_all, member, room_id, i) for i, member in enumerate(members)]
        try:
            sent = [f.result(timeout=DEADLINE) for f in sends]
        except BaseException:
            stop.set()
            raise
        synced = {user_id: f.result(timeout=DEADLINE) for user_id, f in syncs.items()}

    all_sent = [eid for ids in sent for eid in ids]
    assert len(set(all_sent)) == TOTAL, f"{len(set(all_sent))} distinct event ids for {TOTAL} sends"

    # /messages, forwards from the owner's starting token: exactly the TOTAL messages, once each.
    history = paginate(
        owner, room_id, dir="f", limit=100, filter=MESSAGE_FILTER, **{"from": tokens[owner.user_id]}
    )
    history_ids = [ev["event_id"] for ev in history]
    assert len(history_ids) == TOTAL, f"/messages has {len(history_ids)} messages, expected {TOTAL}"
    assert set(history_ids) == set(all_sent)
    bodies = [ev["content"]["body"] for ev in history]
    assert len(set(bodies)) == TOTAL  # no retried txn produced a second event

    # Every sender's messages appear in their send order.
    position = {eid: i for i, eid in enumerate(history_ids)}
    for ids in sent:
        assert [position[eid] for eid in ids] == sorted(position[eid] for eid in ids)

    # Every member saw the same sequence through /sync, and it is the /messages order.
    for user_id, events in synced.items():
        got = [ev["event_id"] for ev in events]
        assert len(got) == TOTAL, f"{user_id} synced {len(got)} messages"
        assert got == history_ids, f"{user_id}: /sync order differs from /messages order"
