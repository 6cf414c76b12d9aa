"""Accepted sessions move earlier when capacity frees up (issue 19), driven by hand on a
clock that moves only when told to, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from execbroker.model import kinds
from execbroker.model.phases import SessionPhase
from execbroker.model.records import SessionRecord
from tests.support.manual import ALICE, START, Broker, started
from tests.support.wire import example

MOVED = "Moved earlier from"


def direct(
    cores: int = 1, *, run_seconds: float = 1, duration: str | None = None, **schedule: Any
) -> dict[str, Any]:
    """A container run of ``cores`` that exits after ``run_seconds``."""
    document: dict[str, Any] = example("direct-request.json")
    document["executable"]["environment"] = {"MOCK_RUN_SECONDS": str(run_seconds)}
    document["compute"] = {
        "kind": kinds.COMPUTE_SIMPLE,
        "cores": {"min": cores, "max": cores},
        "memory": {"min": 1, "max": 1},
    }
    requested = dict(schedule)
    if duration is not None:
        requested["duration"] = duration
    if requested:
        document["schedule"] = {"requested": requested}
    return document


@pytest.fixture
async def broker(database_url: str, tmp_path: Path) -> AsyncIterator[Broker]:
    async with started(database_url, tmp_path, Broker, capacity_cores=2) as found:
        yield found


def moves(session: SessionRecord) -> list[str]:
    return [m.message or "" for m in session.messages if (m.message or "").startswith(MOVED)]


async def run_until(broker: Broker, seconds: float) -> None:
    """The clock moves on a second at a time; the engine catches up at each."""
    now = broker.clock.now()
    for step in range(1, int(seconds) + 1):
        await broker.settle(now + timedelta(seconds=step))


async def test_a_direct_run_waiting_behind_two_moves_into_the_first_freed_core(
    broker: Broker,
) -> None:
    runs = [await broker.offers.execute_directly(direct(), caller=ALICE) for _ in range(3)]
    third = runs[2]
    # Two cores: the third waits for the first two bookings (an hour each) to end.
    assert third.schedule.available_start >= START + timedelta(hours=1)
    await run_until(broker, 10)
    done = [await broker.read(run.uuid) for run in runs[:2]]
    assert [d.phase for d in done] == [SessionPhase.COMPLETED] * 2
    moved = await broker.read(third.uuid)
    assert moved.schedule.available_start < START + timedelta(seconds=30), moved.schedule
    [note] = moves(moved)
    assert re.search(r"capacity freed by (a run|\d runs) that ended early", note), note
    assert moved.messages[-1].values is not None
    # The booking kept its length and resources.
    assert moved.schedule.available_duration == third.schedule.available_duration
    assert moved.cores == third.cores
    await run_until(broker, 10)
    assert (await broker.read(third.uuid)).phase is SessionPhase.COMPLETED


async def test_no_moves_when_backfill_is_off(database_url: str, tmp_path: Path) -> None:
    async with started(database_url, tmp_path, Broker, capacity_cores=2, backfill=False) as broker:
        runs = [await broker.offers.execute_directly(direct(), caller=ALICE) for _ in range(3)]
        await run_until(broker, 10)
        third = await broker.read(runs[2].uuid)
        assert third.schedule.available_start == runs[2].schedule.available_start
        assert third.phase is SessionPhase.WAITING
        assert not moves(third)
