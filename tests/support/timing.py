"""Checking that work grows linearly with its input, without flaky timing."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = ["assert_linear", "best_time"]


def best_time(work: Callable[[Any], object], argument: Any, *, repeat: int = 5) -> float:
    """The shortest of ``repeat`` runs of ``work(argument)``, in seconds."""
    best = float("inf")
    # A collection during a run costs in proportion to everything the test process holds,
    # not to the input: it would make larger inputs look slower than they are.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            work(argument)
            best = min(best, time.perf_counter() - started)
    finally:
        if collecting:
            gc.enable()
    return best


def assert_linear(
    work: Callable[[Any], object],
    make: Callable[[int], Any],
    *,
    small: int,
    factor: int = 8,
    floor: float = 0.002,
) -> None:
    """``work`` on an input ``factor`` times larger takes well under ``factor`` squared
    times as long: at most 3 times ``factor`` times, measured against at least ``floor``
    seconds. Linear work takes about ``factor`` times as long, quadratic work ``factor``
    squared (64 times for the default 8), so the bound sits far from both and timing noise
    cannot tip it.
    """
    short = best_time(work, make(small))
    long = best_time(work, make(small * factor))
    assert long < 3 * factor * max(short, floor), (
        f"{small * factor} took {long:.4f} s, {small} took {short:.4f} s: not linear"
    )
