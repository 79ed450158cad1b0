"""Standard clients sign in with directory (LDAP) passwords unchanged: matrix-js-sdk against a
server process configured with matrix-synapse-ldap3's `modules:` block and a real slapd.
(matrix-nio is covered in tests/api/test_ldap_login.py.)"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from synapse_compat_tests.launcher import LaunchedServer, launch
from tests.clients.test_js_e2ee import JS_DIR, NODE, _require_node_modules
from tests.ldap.slapd import running_slapd, synapse_ldap_module

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def ldap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedServer]:
    with running_slapd(tmp_path_factory.mktemp("slapd")) as slapd:
        server = launch(
            "sqlite", tmp_path_factory.mktemp("hs"), overrides={"modules": [synapse_ldap_module(slapd.uri)]}
        )
        try:
            yield server
        finally:
            server.stop()


def test_matrix_js_sdk_logs_in_with_an_ldap_password(ldap_server: LaunchedServer) -> None:
    _require_node_modules()
    user_id = f"@kim.minjun:{ldap_server.config['server_name']}"
    env = {
        **os.environ,
        "HS_BASE_URL": ldap_server.base_url,
        "LOGIN_USER": "kim.minjun",
        "LOGIN_PASSWORD": "minjun-pw",
        "EXPECT_USER_ID": user_id,
    }
    proc = subprocess.run(
        [str(NODE), "password_login.mjs"], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"OK {user_id} 김민준", proc.stdout
