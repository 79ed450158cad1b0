"""What the appservice has learned about rooms from the events it received: memberships and
power levels, so that bots can decide without asking the homeserver each time."""

from __future__ import annotations

from typing import Any


class StateStore:
    def __init__(self) -> None:
        self._members: dict[str, dict[str, str]] = {}  # room -> user -> membership
        self._power: dict[str, dict[str, Any]] = {}  # room -> m.room.power_levels content

    def update(self, event: dict[str, Any]) -> None:
        room_id, state_key = event.get("room_id"), event.get("state_key")
        content = event.get("content")
        if not isinstance(room_id, str) or not isinstance(state_key, str) or not isinstance(content, dict):
            return
        if event.get("type") == "m.room.member" and isinstance(content.get("membership"), str):
            self._members.setdefault(room_id, {})[state_key] = content["membership"]
        elif event.get("type") == "m.room.power_levels" and state_key == "":
            self._power[room_id] = content

    def membership(self, room_id: str, user_id: str) -> str | None:
        return self._members.get(room_id, {}).get(user_id)

    def is_joined(self, room_id: str, user_id: str) -> bool:
        return self.membership(room_id, user_id) == "join"

    def set_membership(self, room_id: str, user_id: str, membership: str) -> None:
        self._members.setdefault(room_id, {})[user_id] = membership

    def joined_members(self, room_id: str) -> list[str]:
        return sorted(u for u, m in self._members.get(room_id, {}).items() if m == "join")

    def power_level(self, room_id: str, user_id: str) -> int:
        levels = self._power.get(room_id)
        if levels is None:
            return 0
        users = levels.get("users") or {}
        value = users.get(user_id, levels.get("users_default", 0))
        return value if isinstance(value, int) else 0

    def can_send(self, room_id: str, user_id: str, event_type: str, state: bool = False) -> bool:
        levels = self._power.get(room_id)
        if levels is None:
            return True  # unknown: let the homeserver decide
        events = levels.get("events") or {}
        default_key = "state_default" if state else "events_default"
        needed = events.get(event_type, levels.get(default_key, 50 if state else 0))
        return self.power_level(room_id, user_id) >= (needed if isinstance(needed, int) else 0)
