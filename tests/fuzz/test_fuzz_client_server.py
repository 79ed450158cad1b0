"""Schema-guided fuzzing of every client-server operation in the spec, on both engines.

For each operation of each ``data/api/client-server/*.yaml`` file, ``FUZZ_EXAMPLES`` requests
(default 40) are generated from the spec's schemas, half conforming and half mutated, with a fixed
seed per operation (``FUZZ_SEED``, default 0) so a run is reproducible. They go to a real server
process, as a real user with real rooms, events, devices and media. The test fails on any response
with status >= 500 and on any 4xx whose body is not a Matrix error. A longer run::

    FUZZ_EXAMPLES=500 .venv/bin/python -m pytest -q tests/fuzz
    .venv/bin/python -m tests.fuzz.runner --engine postgres --examples 500   # with a report

See docs/testing.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from synapse_compat_tests.launcher import LaunchedServer, LaunchError, PostgresUnavailable, launch

from .runner import SERVER_OVERRIDES, problem_with, run_campaign, tracebacks
from .spec_ops import load_operations

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
SEED = int(os.environ.get("FUZZ_SEED", "0"))


@pytest.fixture(params=["sqlite", "postgres"])
def fuzz_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LaunchedServer]:
    try:
        server = launch(request.param, tmp_path / "server", overrides=SERVER_OVERRIDES)
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and PostgreSQL is not available: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not available: {exc}")
    except LaunchError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def test_fuzz_every_client_server_operation(fuzz_server: LaunchedServer) -> None:
    operations = load_operations()
    report = run_campaign(
        fuzz_server.base_url, fuzz_server.shared_secret, EXAMPLES, SEED, operations=operations
    )
    missed = [op.name for op in operations if report.per_operation[op.name] == 0]
    assert not missed, f"operations that got no request: {missed}"
    # Every 5xx (but the spec's own 504 M_NOT_YET_UPLOADED) and every non-Matrix 4xx is a finding.
    if report.findings:
        log = fuzz_server.stderr_path.read_text(errors="replace")
        server_side = "\n".join(f"{n:5d}  {line}" for line, n in tracebacks(log).most_common(20))
        pytest.fail(f"{report.summary()}\n--- server exceptions ---\n{server_side}", pytrace=False)


def test_spec_operations_are_all_loaded() -> None:
    """Every client-server file contributes operations, with ``$ref``s resolved to schemas."""
    operations = load_operations()
    files = {op.spec_file for op in operations}
    assert len(operations) > 150 and len(files) > 60
    send = next(op for op in operations if op.operation_id == "sendMessage")
    assert {p.name for p in send.parameters} == {"roomId", "eventType", "txnId"}
    create = next(op for op in operations if op.operation_id == "createRoom")
    assert create.body_schema is not None and "preset" in create.body_schema["properties"]
    assert "$ref" not in repr(create.body_schema)


@pytest.mark.parametrize(
    ("status", "body", "bad"),
    [
        (200, {}, False),
        (400, {"errcode": "M_BAD_JSON", "error": "x"}, False),
        (401, {"flows": [{"stages": ["m.login.password"]}], "session": "s"}, False),
        (500, {"errcode": "M_UNKNOWN", "error": "x"}, True),
        (502, None, True),
        (400, None, True),  # text/plain from the HTTP layer
        (404, {"error": "x"}, True),
        (403, {"errcode": 1, "error": "x"}, True),
        (504, {"errcode": "M_UNKNOWN", "error": "x"}, True),
        (504, {"errcode": "M_NOT_YET_UPLOADED", "error": "x"}, False),  # spec-mandated, media only
    ],
)
def test_finding_classification(status: int, body: object, bad: bool) -> None:
    operation = "authed-content-repo:GET /media/download/{serverName}/{mediaId}"
    assert (problem_with(status, body, b"raw", operation) is not None) is bad
    if status == 504:  # anywhere else, even M_NOT_YET_UPLOADED is a finding
        assert problem_with(status, body, b"raw", "sync:GET /sync") is not None
