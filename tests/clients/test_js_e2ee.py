"""matrix-js-sdk with its Rust crypto: cross-signing, key backup, an encrypted DM and history
restored on a second device (tests/clients/js/e2ee_dm.mjs) against a real server process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from synapse_compat_tests.harness import Homeserver
from synapse_compat_tests.launcher import LaunchedServer

JS_DIR = Path(__file__).parent / "js"
NODE = JS_DIR / "node_modules" / ".bin" / "node"
PASSWORD = "correct horse battery staple 1"

pytestmark = pytest.mark.node


def _require_node_modules() -> None:
    missing = [p for p in (NODE, JS_DIR / "node_modules" / "matrix-js-sdk") if not p.exists()]
    if not missing:
        return
    message = (
        f"{', '.join(str(p) for p in missing)} missing: run `npm ci` in {JS_DIR} "
        "(tests/run.sh does) to install matrix-js-sdk and Node >= 22"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run_node_script(server: LaunchedServer, script: str, timeout: int) -> None:
    """Register Alice and Bob, then run `script` from tests/clients/js with the npm-provided Node;
    the script must exit 0 and print OK."""
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
        [str(NODE), script],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = f"--- stdout ---\n{proc.stdout[-20000:]}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0, output
    assert "OK" in proc.stdout, output


def test_js_sdk_encrypted_dm_and_key_backup(server: LaunchedServer) -> None:
    run_node_script(server, "e2ee_dm.mjs", timeout=600)
