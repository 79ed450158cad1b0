"""Every unstable feature /versions advertises as true has a check that exercises it in
synapse_compat_tests/test_unstable_features.py (which runs against our server and Synapse)."""

from __future__ import annotations

from homeserver.api.client.versions import UNSTABLE_FEATURES
from synapse_compat_tests.test_unstable_features import FEATURE_CHECKS, SYNAPSE_DEFAULTS


def test_every_advertised_feature_has_a_check() -> None:
    advertised = {name for name, enabled in UNSTABLE_FEATURES.items() if enabled}
    assert advertised - set(FEATURE_CHECKS) == set()


def test_synapse_defaults_are_advertised() -> None:
    assert all(UNSTABLE_FEATURES.get(name) is True for name in SYNAPSE_DEFAULTS)


def test_flags_are_booleans() -> None:
    assert all(isinstance(v, bool) for v in UNSTABLE_FEATURES.values())
