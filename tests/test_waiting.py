"""tests/support/waiting.py: the one way the tests poll a condition with a deadline."""

from __future__ import annotations

import itertools

import pytest

from tests.support.waiting import eventually, eventually_sync


async def test_eventually_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()

    async def read() -> int:
        return next(counter)

    assert await eventually(read, lambda n: n >= 3, what="three", interval=0) == 3


async def test_eventually_names_what_it_awaited_and_the_last_value() -> None:
    async def read() -> str:
        return "OFFERED"

    with pytest.raises(AssertionError, match=r"expired: not within 0.05 s \(last read: 'OFFERED'"):
        await eventually(read, lambda phase: phase == "EXPIRED", what="expired", within=0.05)


def test_eventually_sync_reads_at_least_once() -> None:
    assert eventually_sync(lambda: "ready", what="ready", within=0) == "ready"
    with pytest.raises(AssertionError, match="never: not within 0 s"):
        eventually_sync(lambda: None, what="never", within=0)
