"""Dot-separated property paths (spec appendix "Dot-separated property paths"), as push-rule
conditions (`content.m\\.relates_to.rel_type`) and filters' `event_fields` write them."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=4096)
def split_path(path: str) -> tuple[str, ...]:
    """Split on dots; `\\.` is a literal dot, `\\\\` a literal backslash, and any other backslash
    is kept as is (`\\x` stays backslash + `x`)."""
    if "\\" not in path:
        return tuple(path.split("."))
    parts: list[str] = []
    current: list[str] = []
    i, n = 0, len(path)
    while i < n:
        ch = path[i]
        if ch == "\\" and i + 1 < n and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return tuple(parts)
