"""Fast canonical JSON for hashing and signing.

orjson with sorted keys emits exactly the spec's canonical form for the values strict room versions
allow (str keys, strings, integers, bools, null, lists, objects): it sorts keys by code point, uses
the short escapes and lowercase \\u00XX for control characters and writes non-ASCII as UTF-8 — and is
~15x faster than `canonicaljson`. tests/unit/test_crypto_canonical.py checks the equivalence.

Floats differ in formatting between the two encoders, and orjson rejects integers beyond 64 bits and
unknown types, so anything that might carry those (legacy-room events, arbitrary objects) takes the
reference encoder: `strict=False`, or automatically when orjson raises.
"""

from __future__ import annotations

from typing import Any

import orjson

from homeserver.core.json import canonical as _reference_canonical

_OPTS = orjson.OPT_SORT_KEYS


def encode_canonical_json(obj: Any, *, strict: bool = True) -> bytes:
    """Canonical JSON bytes of `obj`.

    `strict=True` is for values that are already known (or required) to be strictly canonical — events
    of room versions >= 6, keys and signatures — where floats are invalid anyway.
    """
    if strict:
        try:
            return orjson.dumps(obj, option=_OPTS)
        except TypeError:
            pass
    return _reference_canonical(obj)
