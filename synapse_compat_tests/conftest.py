"""Fixtures for the black-box compat suite.

Target selection: ``--base-url`` / env ``MATRIX_BASE_URL`` (with ``--shared-secret`` /
``MATRIX_SHARED_SECRET``) points the suite at a running server. Without a base URL the suite starts
our own server once per database backend (``sqlite`` and ``postgres``) through :mod:`.launcher`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .appservice_support import write_registration
from .harness import Homeserver, User
from .launcher import LaunchError, PostgresUnavailable, launch


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("matrix-compat", "black-box Matrix compat tests")
    group.addoption(
        "--base-url",
        default=os.environ.get("MATRIX_BASE_URL"),
        help="base URL of the homeserver under test (env MATRIX_BASE_URL); "
        "default: start our homeserver for each database backend",
    )
    group.addoption(
        "--appservice-registration",
        default=os.environ.get("MATRIX_APPSERVICE_REGISTRATION"),
        help="the appservice registration file that server was started with (env "
        "MATRIX_APPSERVICE_REGISTRATION); see appservice_support.py. Without it the appservice "
        "tests are skipped against an external server",
    )
    group.addoption(
        "--shared-secret",
        default=os.environ.get("MATRIX_SHARED_SECRET"),
        help="registration_shared_secret of that server (env MATRIX_SHARED_SECRET)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hs_backend" in metafunc.fixturenames:
        params = ["external"] if metafunc.config.getoption("base_url") else ["sqlite", "postgres"]
        metafunc.parametrize("hs_backend", params, scope="session", indirect=True)


@pytest.fixture(scope="session")
def hs_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def hs(
    hs_backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Homeserver]:
    config = request.config
    if hs_backend == "external":
        base_url = str(config.getoption("base_url")).rstrip("/")
        registration = config.getoption("appservice_registration")
        yield Homeserver(base_url, config.getoption("shared_secret"), "external", registration)
        return
    workdir: Path = tmp_path_factory.mktemp(f"homeserver-{hs_backend}")
    registration_path = write_registration(workdir)
    try:
        server = launch(hs_backend, workdir, overrides={"app_service_config_files": [str(registration_path)]})
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the postgres backend cannot run: {exc}", pytrace=False)
        pytest.skip(f"postgres backend skipped: {exc}")
    except LaunchError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Homeserver(server.base_url, server.shared_secret, hs_backend, str(registration_path))
    finally:
        server.stop()


@pytest.fixture
def user(hs: Homeserver) -> User:
    """A freshly registered user with one device."""
    return hs.register()


@pytest.fixture
def other_user(hs: Homeserver) -> User:
    return hs.register()
