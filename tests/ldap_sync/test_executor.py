"""The executor on its own: progress for long plans, failures reported without stopping."""

from __future__ import annotations

from pathlib import Path

from appservices import MatrixRequestError
from bridges.ldap_sync.executor import Executor
from bridges.ldap_sync.planner import Action, Plan
from bridges.ldap_sync.state import BridgeState

from .test_planner import config


class FakeHomeserver:
    def __init__(self) -> None:
        self.joined: list[tuple[str, str]] = []

    async def force_join(self, room_id: str, user_id: str) -> None:
        if user_id == "@broken:test.local":
            raise MatrixRequestError(404, {"errcode": "M_NOT_FOUND", "error": "User not found"})
        self.joined.append((room_id, user_id))


async def test_long_plans_report_progress_about_once_a_second(tmp_path: Path) -> None:
    hs = FakeHomeserver()
    state = BridgeState(tmp_path / "s.db")
    lines: list[str] = []
    plan = Plan(
        [
            Action("join", "unit:x:room", f"join @u{i}:test.local", {"user_id": f"@u{i}:test.local"})
            for i in range(500)
        ]
    )
    plan.actions.insert(
        250, Action("join", "unit:x:room", "join @broken:test.local", {"user_id": "@broken:test.local"})
    )
    executor = Executor(hs, state, config(tmp_path), {"unit:x:room": "!r:test.local"}, lines.append)  # type: ignore[arg-type]
    await executor.run(plan)
    assert len(hs.joined) == 500 and executor.done == 500
    assert executor.errors == ["join @broken:test.local: 404 M_NOT_FOUND User not found"]
    # not one line per action: failures, about one a second, and the last
    assert len(lines) < 20
    assert lines[-1].startswith("[501/501]")
    assert any("join @broken:test.local FAILED (404 M_NOT_FOUND User not found)" in line for line in lines)


async def test_an_action_on_a_room_never_created_fails_alone(tmp_path: Path) -> None:
    hs = FakeHomeserver()
    lines: list[str] = []
    plan = Plan([Action("join", "unit:gone:room", "join @a:test.local", {"user_id": "@a:test.local"})])
    executor = Executor(hs, BridgeState(":memory:"), config(tmp_path), {}, lines.append)  # type: ignore[arg-type]
    await executor.run(plan)
    assert executor.errors == ["join @a:test.local: room for unit:gone:room was not created"]
    assert hs.joined == []
