"""matrix-js-sdk (no crypto): sync loops reach PREPARED/SYNCING, messages, typing and receipts
flow between two clients (tests/clients/js/sync_basic.mjs) against a real server process."""

from __future__ import annotations

import pytest

from synapse_compat_tests.launcher import LaunchedServer

from .test_js_e2ee import run_node_script

pytestmark = pytest.mark.node


def test_js_sdk_two_clients_sync(server: LaunchedServer) -> None:
    run_node_script(server, "sync_basic.mjs", timeout=300)
