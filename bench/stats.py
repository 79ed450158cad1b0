"""Small statistics helpers for the load tool: percentiles and latency summaries (milliseconds)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (p in 0..100) of an already sorted sequence; None when empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    if n == 1:
        return float(sorted_values[0])
    rank = (p / 100.0) * (n - 1)
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return float(sorted_values[lo])
    frac = rank - lo
    return float(sorted_values[lo]) * (1 - frac) + float(sorted_values[hi]) * frac


def _r(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def summarize_ms(seconds: Iterable[float], *, prefix: str = "") -> dict[str, Any]:
    """Summarise durations given in seconds as milliseconds: n, mean, p50, p95, p99, max, min."""
    vals = sorted(s * 1000.0 for s in seconds)
    out: dict[str, Any] = {
        f"{prefix}n": len(vals),
        f"{prefix}min_ms": _r(vals[0]) if vals else None,
        f"{prefix}mean_ms": _r(sum(vals) / len(vals)) if vals else None,
        f"{prefix}p50_ms": _r(percentile(vals, 50)),
        f"{prefix}p95_ms": _r(percentile(vals, 95)),
        f"{prefix}p99_ms": _r(percentile(vals, 99)),
        f"{prefix}max_ms": _r(vals[-1]) if vals else None,
    }
    return out


def rate(count: int | float, seconds: float) -> float | None:
    return round(count / seconds, 2) if seconds > 0 else None


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def fmt_num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip()
