"""Time-up is a decision like a cancel, and an extension races it fairly (FAULT-PROBES R3).

An engine pass that found the offered time over used to release the compute in the same
pass, and commit its ending whatever had happened since: an extension answered 200 while
the pass was under way was lost (the run ended at the old time, with the longer booking and
cost kept). Now the pass commits the ending first and asks the platform on the next pass,
only if no user changed the session meanwhile; an extension judged (under the lock) after
the run's end is answered 409.

The engine's steps are driven by hand, with a clock that moves only when told to, so each
order of events happens exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from execbroker.exceptions import ConflictError
from execbroker.lifecycle.apply import advance
from execbroker.model.phases import SessionPhase
from execbroker.model.records import ComponentRole, SessionRecord
from execbroker.platforms.mock import read_ledger
from tests.support import manual
from tests.support.engine import container
from tests.support.manual import ALICE, START, TIMINGS

EXTEND = {"kind": "uri:integer-delta-update", "path": "/schedule/available/duration"}
WORKER = "slow-pass"


class Broker(manual.Broker):
    """The hand-driven broker, with the steps of a run reaching its end."""

    async def running(self) -> SessionRecord:
        """A direct run of one minute, RUNNING."""
        direct = await self.offers.execute_directly(container(duration="PT1M"), caller=ALICE)
        for second in range(1, 30):
            await self.settle(START + timedelta(seconds=second))
            session = await self.read(direct.uuid)
            if session.phase is SessionPhase.RUNNING:
                return session
        raise AssertionError(f"never RUNNING: {session.phase}")

    async def slow_pass_deciding_time_up(self, at: datetime) -> Any:
        """An engine pass that reads the session at ``at`` (the run's time is up) and has
        not committed yet: its platform calls are still under way."""
        (claimed,) = await self.store.claims.claim_due(
            worker=WORKER, now=at, lease_until=at + timedelta(minutes=1), limit=10
        )
        found = await advance(claimed, self.platform, now=at, timings=TIMINGS)
        assert found.ending is SessionPhase.COMPLETED, "the pass found the time up"
        return found

    def compute_releases(self, session: SessionRecord) -> int:
        compute = session.component(ComponentRole.COMPUTE)
        assert compute is not None
        entries = read_ledger(self.settings.data_dir / "mock-ledger.jsonl")
        return sum(
            1 for e in entries if e["action"] == "release" and e["component"] == str(compute.uuid)
        )


def _run_end(session: SessionRecord) -> datetime:
    return session.schedule.available_start + session.schedule.available_duration


@pytest.fixture
async def broker(database_url: str, tmp_path: Path) -> AsyncIterator[Broker]:
    async with manual.started(database_url, tmp_path, Broker) as made:
        yield made


async def test_an_extension_that_lands_first_wins_over_a_pass_ending_the_run(
    broker: Broker,
) -> None:
    session = await broker.running()
    end = _run_end(session)
    slow = await broker.slow_pass_deciding_time_up(end)

    # While that pass is under way, the user extends; judged just before the end.
    broker.clock.set(end - timedelta(seconds=1))
    extended = await broker.sessions.apply_update(
        session.uuid, {**EXTEND, "delta": 600}, caller=ALICE
    )
    assert extended.schedule.available_duration == timedelta(minutes=11)
    await broker.store.claims.commit_advances([slow], worker=WORKER, now=end)

    # The older view's decision is dropped: the run goes on to its new end.
    await broker.settle(end + timedelta(seconds=2))
    now = await broker.read(session.uuid)
    assert now.phase is SessionPhase.RUNNING
    assert now.ending is None
    assert broker.compute_releases(now) == 0, "the compute was not released"
    await broker.settle(end + timedelta(minutes=10, seconds=2))
    ended = await broker.read(session.uuid)
    assert ended.phase is SessionPhase.COMPLETED
    assert any("ended at" in (m.message or "") for m in ended.messages)
    assert broker.compute_releases(ended) == 1


async def test_an_extension_after_the_end_is_refused_while_the_run_is_being_ended(
    broker: Broker,
) -> None:
    session = await broker.running()
    end = _run_end(session)
    slow = await broker.slow_pass_deciding_time_up(end)

    # Arrives after the end, before the pass has committed: the database still says
    # RUNNING, the lock's clock says the time is up.
    broker.clock.set(end + timedelta(seconds=1))
    with pytest.raises(ConflictError, match="offered time ended at"):
        await broker.sessions.apply_update(session.uuid, {**EXTEND, "delta": 600}, caller=ALICE)
    await broker.store.claims.commit_advances([slow], worker=WORKER, now=end)
    # Committed before the platform was asked: the compute is being released.
    decided = await broker.read(session.uuid)
    assert decided.ending is SessionPhase.COMPLETED
    assert broker.compute_releases(decided) == 0

    await broker.settle(end + timedelta(seconds=5))
    ended = await broker.read(session.uuid)
    assert ended.phase is SessionPhase.COMPLETED
    assert ended.schedule.available_duration == timedelta(minutes=1), "not extended"
    assert ended.costs == session.costs, "charged for the offered minute only"
    assert broker.compute_releases(ended) == 1
