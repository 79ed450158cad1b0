"""matrix-js-sdk (no crypto): sync loops reach PREPARED/SYNCING, messages, typing and receipts
flow between two clients (tests/clients/js/sync_basic.mjs) against a real server process."""

from __future__ import annotations

import os
import subprocess

import pytest

from synapse_compat_tests.harness import Homeserver
from synapse_compat_tests.launcher import LaunchedServer

from .test_js_e2ee import JS_DIR, NODE, PASSWORD, _require_node_modules

pytestmark = pytest.mark.node


def test_js_sdk_two_clients_sync(server: LaunchedServer) -> None:
    _require_node_modules()
    hs = Homeserver(server.base_url, server.shared_secret, server.backend)
    alice = hs.register(password=PASSWORD)
    bob = hs.register(password=PASSWORD)
    env = {
        **os.environ,
        "HS_BASE_URL": server.base_url,
        "ALICE_USER": alice.localpart,
        "BOB_USER": bob.localpart,
        "USER_PASSWORD": PASSWORD,
    }
    proc = subprocess.run(
        [str(NODE), "sync_basic.mjs"],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = f"--- stdout ---\n{proc.stdout[-20000:]}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0, output
    assert "OK" in proc.stdout, output
