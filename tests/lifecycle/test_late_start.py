"""A session started late waits for what is late, transitively (RULES-DEFECTS D3).

When a session's components start after their planned times (the broker was down, or it
was slow to take the session up), a dependency that has not had its planned preparing time
since it actually started is waited for, not blamed. That exception was not transitive: a
data resource still WAITING behind its late storage made the compute fail at once ("data is
WAITING not AVAILABLE at its prepare start"), while the data itself rightly waited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from execbroker.model.phases import SessionPhase
from tests.support.engine import ROLES, container
from tests.support.manual import ALICE, START, Broker, started


@pytest.fixture
async def late(database_url: str, tmp_path: Path) -> AsyncIterator[Broker]:
    # Storage takes half its planned second; everything else is ready at once.
    async with started(
        database_url,
        tmp_path,
        Broker,
        mock_prepare_seconds={**dict.fromkeys(ROLES, 0.0), "storage": 0.5},
        mock_run_seconds=5,
    ) as made:
        yield made


async def test_a_compute_waits_for_data_waiting_behind_a_late_storage(late: Broker) -> None:
    # The compute mounts the data only: its storage is its dependency's, not its own.
    document = container(duration="PT1M")
    volumes = document["compute"]["volumes"]
    document["compute"]["volumes"] = [v for v in volumes if v["resource"] != "scratch"]
    assert len(document["compute"]["volumes"]) == 1, volumes
    direct = await late.offers.execute_directly(document, caller=ALICE)
    planned = direct.schedule.available_start
    # The engine takes the session up only after every planned start has passed.
    behind = planned + timedelta(seconds=10)
    await late.settle(behind)
    waiting = await late.read(direct.uuid)
    assert waiting.phase is not SessionPhase.FAILED, [m.message for m in waiting.messages]

    for tenth in range(1, 80):
        await late.settle(behind + timedelta(seconds=tenth / 10))
        session = await late.read(direct.uuid)
        if session.phase in (SessionPhase.COMPLETED, SessionPhase.FAILED):
            break
    failures = [
        m.message for c in session.components for m in c.messages if "cannot" in (m.message or "")
    ]
    assert session.phase is SessionPhase.COMPLETED, failures
    assert planned > START
