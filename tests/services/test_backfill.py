"""Accepted sessions move earlier when capacity frees up (issue 19), driven by hand on a
clock that moves only when told to, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from execbroker.model import kinds
from execbroker.model.phases import HOLDING_SESSION_PHASES, SessionPhase
from execbroker.model.records import SessionRecord
from execbroker.storage.tables import sessions
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


ACCEPT = {"kind": "uri:enum-value-update", "path": "/phase", "value": "ACCEPTED"}
CANCEL = {"kind": "uri:enum-value-update", "path": "/phase", "value": "CANCELLED"}


async def test_first_come_first_served_a_big_run_is_not_overtaken(broker: Broker) -> None:
    # Two cores: one held long, one freed after a second; a 2-core run accepted next
    # waits for both, and a 1-core run accepted after it for the hour after that.
    long = await broker.offers.execute_directly(direct(run_seconds=3600), caller=ALICE)
    await broker.offers.execute_directly(direct(run_seconds=1), caller=ALICE)
    big = await broker.offers.execute_directly(direct(2, run_seconds=3600), caller=ALICE)
    broker.clock.advance(timedelta(seconds=1))  # accepted after the big run
    small = await broker.offers.execute_directly(direct(1, run_seconds=3600), caller=ALICE)
    assert small.schedule.available_start >= big.schedule.release_end
    await run_until(broker, 10)
    # A core is free until the big run's start, but not for the small run's whole hour:
    # taking it would delay the big run, accepted first. Neither moves.
    assert (await broker.read(big.uuid)).schedule == big.schedule
    assert (await broker.read(small.uuid)).schedule == small.schedule
    # The long run is cancelled: the big run moves first, then the small one after it.
    await broker.sessions.apply_update(long.uuid, CANCEL, caller=ALICE)
    await run_until(broker, 5)
    moved_big = await broker.read(big.uuid)
    moved_small = await broker.read(small.uuid)
    assert moved_big.schedule.available_start < START + timedelta(minutes=1)
    assert moves(moved_big), moved_big.messages
    assert "a cancelled session" in moves(moved_big)[0]
    assert moved_small.schedule.prepare_start >= moved_big.schedule.release_end
    assert moved_small.schedule.available_start < small.schedule.available_start


async def test_a_short_run_accepted_later_fills_a_gap_without_delaying_anyone(
    broker: Broker,
) -> None:
    await broker.offers.execute_directly(direct(run_seconds=3600), caller=ALICE)
    await broker.offers.execute_directly(direct(run_seconds=1), caller=ALICE)
    big = await broker.offers.execute_directly(direct(2, run_seconds=3600), caller=ALICE)
    broker.clock.advance(timedelta(seconds=1))
    short = await broker.offers.execute_directly(direct(1, duration="PT10M"), caller=ALICE)
    assert short.schedule.available_start >= big.schedule.release_end
    await run_until(broker, 10)
    # Ten minutes fit in the freed core before the big run's start: the short run backfills.
    assert (await broker.read(big.uuid)).schedule == big.schedule
    moved = await broker.read(short.uuid)
    assert moved.schedule.available_start < START + timedelta(minutes=1)
    assert moved.schedule.release_end <= big.schedule.prepare_start


def _notebook(start_early: bool | None) -> dict[str, Any]:
    document: dict[str, Any] = example("notebook-request.yaml")
    document["compute"]["cores"] = {"min": 1, "max": 1}
    document["compute"]["memory"] = {"min": 1, "max": 1}
    document["schedule"] = {"requested": {"duration": "PT1H", "start": f"{START.isoformat()}/PT6H"}}
    if start_early is not None:
        document["schedule"]["requested"]["x-start-early"] = start_early
    return document


async def _accept_first(broker: Broker, document: dict[str, Any]) -> SessionRecord:
    offer_set = await broker.offers.request_offers(document, caller=ALICE)
    assert offer_set.offers, offer_set.messages
    first = offer_set.offers[0]
    await broker.sessions.apply_update(first.uuid, ACCEPT, caller=ALICE)
    return first


@pytest.mark.parametrize(("start_early", "moves_earlier"), [(None, False), (True, True)])
async def test_a_notebook_moves_only_when_its_request_asks(
    broker: Broker, start_early: bool | None, moves_earlier: bool
) -> None:
    await broker.offers.execute_directly(direct(run_seconds=3600), caller=ALICE)
    await broker.offers.execute_directly(direct(run_seconds=1), caller=ALICE)
    notebook = await _accept_first(broker, _notebook(start_early))
    assert notebook.schedule.available_start >= START + timedelta(hours=1)
    await run_until(broker, 10)
    now = await broker.read(notebook.uuid)
    if moves_earlier:
        assert now.schedule.available_start < START + timedelta(minutes=1)
        assert moves(now)
    else:
        assert now.schedule == notebook.schedule
        assert not moves(now)


async def test_a_container_offer_moves_no_earlier_than_its_start_interval(
    broker: Broker,
) -> None:
    await broker.offers.execute_directly(direct(run_seconds=3600), caller=ALICE)
    await broker.offers.execute_directly(direct(run_seconds=1), caller=ALICE)
    allowed = START + timedelta(minutes=20)
    document = direct(duration="PT1H", start=f"{allowed.isoformat()}/PT6H")
    offer = await _accept_first(broker, document)
    assert offer.schedule.available_start >= START + timedelta(hours=1)
    await run_until(broker, 10)
    moved = await broker.read(offer.uuid)
    assert moved.schedule.available_start == allowed
    assert moved.promised_start == offer.schedule.available_start
    assert moved.schedule.available_duration == offer.schedule.available_duration


async def test_a_long_poll_hears_of_the_move_at_once(broker: Broker) -> None:
    await broker.offers.execute_directly(direct(run_seconds=3600), caller=ALICE)
    await broker.offers.execute_directly(direct(run_seconds=1), caller=ALICE)
    allowed = START + timedelta(minutes=20)
    document = direct(duration="PT1H", start=f"{allowed.isoformat()}/PT6H")
    offer = await _accept_first(broker, document)
    await broker.settle(START)
    assert (await broker.read(offer.uuid)).phase is SessionPhase.WAITING
    # Waiting on WAITING, which lasts at least until 20 minutes from now: only the move
    # can end the wait within the test.
    waiter = asyncio.create_task(
        broker.sessions.wait_for_change(offer.uuid, caller=ALICE, seconds=60, phase=None)
    )
    await asyncio.sleep(0)
    await run_until(broker, 10)
    heard = await asyncio.wait_for(waiter, timeout=30)
    assert heard.phase is SessionPhase.WAITING
    assert heard.schedule.available_start == allowed


async def _most_cores_held(broker: Broker) -> int:
    """The most cores the live bookings hold at any instant, read from the rows."""
    async with broker.database.read() as connection:
        rows = (
            await connection.execute(
                sa.select(sessions.c.book_start, sessions.c.book_end, sessions.c.cores).where(
                    sessions.c.phase.in_([p.value for p in HOLDING_SESSION_PHASES])
                )
            )
        ).all()
    moments = {r.book_start for r in rows}
    return max(
        (sum(r.cores for r in rows if r.book_start <= m < r.book_end) for m in moments),
        default=0,
    )


async def test_two_brokers_moving_at_once_never_overbook(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("several brokers share a PostgreSQL database, not an SQLite file")
    async with (
        started(database_url, tmp_path / "a", Broker, capacity_cores=2) as first,
        started(database_url, tmp_path / "b", Broker, capacity_cores=2) as second,
    ):
        await first.offers.execute_directly(direct(run_seconds=3600), caller=ALICE)
        await first.offers.execute_directly(direct(run_seconds=1), caller=ALICE)
        waiting = []
        for index in range(6):
            broker = (first, second)[index % 2]
            broker.clock.set(START + timedelta(milliseconds=index + 1))
            run = direct(run_seconds=3600, duration="PT10M")
            waiting.append(await broker.offers.execute_directly(run, caller=ALICE))
        assert await _most_cores_held(first) == 2
        # The short run ends; then both brokers look for moves at the same moment.
        for moment in range(1, 8):
            at = START + timedelta(seconds=moment)
            first.clock.set(at)
            second.clock.set(at)
            await asyncio.gather(first.engine.run_once(), second.engine.run_once())
            assert await _most_cores_held(first) <= 2
        found = [await first.read(w.uuid) for w in waiting]
        moved = [f for f in found if moves(f)]
        # The freed core went to the first accepted waiting run, the rest queue after it.
        assert moved, [f.messages for f in found]
        assert found[0].schedule.available_start < START + timedelta(minutes=1)
        starts = [f.schedule.available_start for f in found]
        assert starts == sorted(starts), "first come, first served"
