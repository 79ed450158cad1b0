"""matrix-js-sdk with its Rust crypto running Element's own flows (tests/clients/js/element_flows.mjs)
against a real server process: registration then `bootstrapCrossSigning` at once, the own device
signed by its owner, the other user's device signed (no red shield), SAS verification of the
other user, and lazy-loaded incremental syncs that carry no redundant member events."""

from __future__ import annotations

import pytest

from synapse_compat_tests.launcher import LaunchedServer

from .test_js_e2ee import run_node_script

pytestmark = pytest.mark.node


def test_js_sdk_element_flows(server: LaunchedServer) -> None:
    run_node_script(server, "element_flows.mjs", timeout=600)
