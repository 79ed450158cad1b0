"""The real server process: /metrics on its listener and one access-log line per request on stderr."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from synapse_compat_tests.client import MatrixClient, register_user
from synapse_compat_tests.launcher import launch


def test_metrics_and_access_log(tmp_path: Path) -> None:
    server = launch("sqlite", tmp_path, overrides={"enable_metrics": True})
    try:
        user_id, token, _ = register_user(MatrixClient(server.base_url), server.shared_secret)
        req = urllib.request.Request(
            f"{server.base_url}/_matrix/client/v3/sync?timeout=0&access_token={token}",
            headers={"User-Agent": "MetricsTest/2"},
        )
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(server.base_url + "/_synapse/metrics") as resp:
            metrics = resp.read().decode()
    finally:
        server.stop()
    assert re.search(
        r"^synapse_http_server_requests_received_total"
        r'\{method="GET",server_name="localhost",servlet="sync"\} 1\.0$',
        metrics,
        re.M,
    ), metrics[:2000]
    assert re.search(r'^synapse_server_name_info\{server_name="localhost"\} 1\.0$', metrics, re.M)

    stderr = server.stderr_path.read_text()
    assert token not in stderr
    port = server.base_url.rsplit(":", 1)[1]
    lines = [line for line in stderr.splitlines() if "MetricsTest/2" in line]
    assert len(lines) == 1, stderr[-3000:]
    line = lines[0]
    assert f"homeserver.access.http.{port} [GET-" in line
    assert f"127.0.0.1 - {port} - {{{user_id}}} Processed request: " in line
    assert (
        ' 200 "GET /_matrix/client/v3/sync?timeout=0&access_token=<redacted> HTTP/1.1" "MetricsTest/2" '
        in line
    )
