"""`soft_file_limit`: the server raises its open-file soft limit at start, as Synapse does."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from synapse_compat_tests.launcher import launch


def _soft_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' line in /proc/PID/limits")


@contextmanager
def _low_inherited_limit(soft: int) -> Iterator[int]:
    """Start children with a low soft limit (they inherit ours); restore ours afterwards."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= soft:
        pytest.skip(f"hard open-file limit {hard} leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("configured", [0, 700])
def test_soft_file_limit_is_applied(tmp_path: Path, configured: int) -> None:
    with _low_inherited_limit(512) as hard:
        server = launch("sqlite", tmp_path, overrides={"soft_file_limit": configured})
    try:
        expected = configured or (hard if hard != resource.RLIM_INFINITY else 1 << 20)
        assert _soft_open_files(server.process.pid) == expected
        assert "soft_file_limit" not in server.stderr_path.read_text()  # not reported as unknown
    finally:
        server.stop()
