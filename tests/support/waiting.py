"""Waiting in a test for something to become true, with a deadline, instead of a sleep.

A test that sleeps for as long as something "should" take is slow when the machine is
idle and flaky when it is busy. It should wait on the thing itself: an event, a manual
clock, the server's long-poll, or, where none of those can be had from outside, a
condition read again every ``interval`` until it holds or ``within`` seconds have passed.
:func:`eventually` (async) and :func:`eventually_sync` (threads and processes) are that
poll, and the failure says what was awaited and what was read last.

A sleep that *is* the scenario (nobody reads for a while; a client that waits out a
``Retry-After``; a request dripped a byte at a time) stays a sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually", "eventually_sync"]

T = TypeVar("T")


def _truthy(value: object) -> bool:
    return bool(value)


async def eventually(
    read: Callable[[], Awaitable[T]],
    until: Callable[[T], bool] = _truthy,
    *,
    what: str,
    within: float = 10,
    interval: float = 0.05,
) -> T:
    """``await read()`` again until ``until`` holds for what it returns, and return that.

    ``AssertionError`` naming ``what`` and the last value read if it does not hold within
    ``within`` seconds. ``read`` runs at least once, however short ``within`` is.
    """
    deadline = time.monotonic() + within
    while True:
        value = await read()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {within} s (last read: {value!r})")
        await asyncio.sleep(interval)


def eventually_sync(
    read: Callable[[], T],
    until: Callable[[T], bool] = _truthy,
    *,
    what: str,
    within: float = 10,
    interval: float = 0.05,
) -> T:
    """:func:`eventually` for code that blocks (a thread, a subprocess, a sync client)."""
    deadline = time.monotonic() + within
    while True:
        value = read()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {within} s (last read: {value!r})")
        time.sleep(interval)
