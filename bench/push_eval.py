"""Micro-benchmark: push rule evaluation for every member of a 1,000-member room.

    python -m bench.push_eval [--members 1000] [--events 2000] [--custom 0.1]

Every member gets an evaluator as the persister would: users who never touched their rules share
the default evaluator; a fraction (`--custom`) has a few rules of their own (a muted room, a
keyword, a sender rule), compiled per user. Each event is a fresh dict, so per-event preparation is
measured too. Prints the time per event (all members) and per member evaluation, calling
`actions_for` per member and through the batch helper `evaluate_members`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from homeserver.push.evaluator import PushRuleEvaluator, default_evaluator, evaluate_members
from homeserver.push.rules import effective_rules


class _Row:
    def __init__(self, kind: str, rule_id: str, priority: int, **kw: Any) -> None:
        self.kind = kind
        self.rule_id = rule_id
        self.priority = priority
        self.conditions = kw.get("conditions")
        self.pattern = kw.get("pattern")
        self.actions = kw.get("actions", ["notify"])
        self.enabled = True


def _custom_evaluator(i: int) -> PushRuleEvaluator:
    rows = [
        _Row(
            "override",
            f"!muted{i % 7}:example.org",
            2,
            conditions=[{"kind": "event_match", "key": "room_id", "pattern": f"!muted{i % 7}:example.org"}],
            actions=[],
        ),
        _Row(
            "content", f"kw{i}", 1, pattern=random.choice(["lunch", "deploy*", "urgent"]), actions=["notify"]
        ),
        _Row(
            "sender", f"@boss{i % 3}:example.org", 1, actions=["notify", {"set_tweak": "sound", "value": "x"}]
        ),
    ]
    return PushRuleEvaluator(effective_rules(rows, []))


def _members(n: int, custom: float) -> list[tuple[str, str, PushRuleEvaluator]]:
    default = default_evaluator()
    out = []
    for i in range(n):
        ev = _custom_evaluator(i) if random.random() < custom else default
        out.append((f"@user{i}:example.org", f"User Number {i}", ev))
    return out


EVENTS: dict[str, Callable[[int], dict[str, Any]]] = {
    "message": lambda i: {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@user0:example.org",
        "event_id": f"$e{i}",
        "content": {"msgtype": "m.text", "body": f"Shall we get lunch together at {i % 12 + 1}pm, folks?"},
    },
    "message+mentions": lambda i: {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@user0:example.org",
        "event_id": f"$e{i}",
        "content": {
            "msgtype": "m.text",
            "body": "User Number 5: can you look at this?",
            "m.mentions": {"user_ids": ["@user5:example.org"]},
        },
    },
    "encrypted": lambda i: {
        "type": "m.room.encrypted",
        "room_id": "!room:example.org",
        "sender": "@user0:example.org",
        "event_id": f"$e{i}",
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn..." * 20},
    },
    "member": lambda i: {
        "type": "m.room.member",
        "room_id": "!room:example.org",
        "sender": "@user0:example.org",
        "state_key": f"@new{i}:example.org",
        "event_id": f"$e{i}",
        "content": {"membership": "join", "displayname": f"New {i}"},
    },
}


def run(members: int, events: int, custom: float) -> dict[str, float]:
    random.seed(1)
    room = _members(members, custom)
    levels = {"room": 50}
    results = {}
    for name, make in EVENTS.items():
        samples = []
        notified = 0
        for i in range(events):
            event = make(i)
            start = time.perf_counter()
            for user_id, display_name, evaluator in room:
                actions = evaluator.actions_for(
                    event,
                    user_id=user_id,
                    room_member_count=members,
                    display_name=display_name,
                    sender_power_level=100,
                    notification_power_levels=levels,
                )
                if actions and "notify" in actions:
                    notified += 1
            samples.append(time.perf_counter() - start)
        median = statistics.median(samples)
        results[name] = median
        print(
            f"{name:18s} {members} members: median {median * 1e3:7.3f} ms/event,"
            f" p95 {sorted(samples)[int(len(samples) * 0.95)] * 1e3:7.3f} ms,"
            f" {median / members * 1e9:6.0f} ns/member, notified {notified / events:.0f}/event"
        )
    samples = []
    for i in range(events):
        event = EVENTS["message"](i)
        start = time.perf_counter()
        evaluate_members(
            event, room, room_member_count=members, sender_power_level=100, notification_power_levels=levels
        )
        samples.append(time.perf_counter() - start)
    median = statistics.median(samples)
    results["evaluate_members(message)"] = median
    print(
        f"{'batch message':18s} {members} members: median {median * 1e3:7.3f} ms/event"
        f" ({median / members * 1e9:.0f} ns/member) via evaluate_members"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--custom", type=float, default=0.1, help="fraction of members with own rules")
    args = parser.parse_args()
    run(args.members, args.events, args.custom)


if __name__ == "__main__":
    main()
