"""matrix-js-sdk's sliding sync (simplified MSC4186) lists rooms and reads timelines against a real
server process (tests/clients/js/sliding_sync.mjs)."""

from __future__ import annotations

import pytest

from synapse_compat_tests.launcher import LaunchedServer

from .test_js_e2ee import run_node_script

pytestmark = pytest.mark.node


def test_js_sdk_sliding_sync_lists_rooms_and_reads_timeline(server: LaunchedServer) -> None:
    run_node_script(server, "sliding_sync.mjs", timeout=300)
