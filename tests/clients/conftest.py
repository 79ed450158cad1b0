"""A real server process for real client libraries (matrix-nio, matrix-js-sdk)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from synapse_compat_tests.launcher import LaunchedServer, launch


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedServer]:
    """Our homeserver on SQLite with open registration, as a separate process."""
    workdir: Path = tmp_path_factory.mktemp("hs")
    launched = launch(
        "sqlite",
        workdir,
        overrides={"enable_registration": True, "enable_registration_without_verification": True},
    )
    try:
        yield launched
    finally:
        launched.stop()
