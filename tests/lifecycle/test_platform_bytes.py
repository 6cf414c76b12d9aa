"""What a platform returns is stored whatever its bytes, and never costs a neighbour its step
(SECURITY-PROBES-2 W3).

A NUL in a container's output made PostgreSQL refuse the engine's whole batch: that session
lost its exit code and output, and a neighbour that had exited 0 ended FAILED. Now output is
stored escaped (``\\x00``, ``\\xff``) on both databases, and a step the database refuses all
the same is written apart from the others, which commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from execbroker.lifecycle.apply import advance
from execbroker.model.phases import MessageLevel, SessionPhase
from execbroker.model.records import SessionRecord
from execbroker.model.wire import MessageItem
from execbroker.storage.claims import UNWRITTEN_STEP_RETRY
from execbroker.storage.tables import sessions
from tests.support.engine import FAST, container, texts, until_ended
from tests.support.manual import ALICE, START, TIMINGS, Broker, started
from tests.support.wire import post

# A NUL, two bytes that are not UTF-8, a window-title sequence and a screen clear.
HOSTILE_OUTPUT = r"before\x00after\xff\xfe\x1b]0;PWNED\x07\x1b[2Jdone\n"
STORED_OUTPUT = r"before\x00after\xff\xfe\x1b]0;PWNED\x07\x1b[2Jdone"


async def test_output_with_nul_and_invalid_utf8_is_kept_escaped_and_the_neighbour_completes(
    broker: Any,
) -> None:
    run = {"MOCK_RUN_SECONDS": "0.5"}
    async with broker(**FAST) as client:
        # Posted together, so that both exit in the same engine pass.
        hostile, neighbour = await asyncio.gather(
            post(
                client,
                "/direct",
                container({**run, "MOCK_OUTPUT": HOSTILE_OUTPUT, "MOCK_EXIT_CODE": "3"}),
            ),
            post(client, "/direct", container(run)),
        )
        assert hostile.status_code == neighbour.status_code == 303
        failed, completed = await asyncio.gather(
            until_ended(client, hostile.headers["location"]),
            until_ended(client, neighbour.headers["location"]),
        )

    assert failed["phase"] == "FAILED"
    said = texts(failed["compute"])
    assert "The executable exited with code 3" in said, said
    assert f"The last 1 lines of its output:\n{STORED_OUTPUT}" in said, said
    assert "\x00" not in said
    assert "\x1b" not in said
    assert completed["phase"] == "COMPLETED", texts(completed)
    assert "exited with code 0" in texts(completed["compute"])


# ------------------------------------------------------------------ one bad step, by hand

WORKER = "hand"


@pytest.fixture
async def harness(database_url: str, tmp_path: Path) -> AsyncIterator[Broker]:
    async with started(database_url, tmp_path, Broker, mock_run_seconds=5) as made:
        yield made


def _said(session: SessionRecord) -> list[str]:
    """Every message of the session and its components."""
    found = [m.message or "" for m in session.messages]
    for component in session.components:
        found += [m.message or "" for m in component.messages]
    return found


async def test_a_step_the_database_refuses_does_not_cost_its_batch_the_others(
    harness: Broker,
) -> None:
    first = await harness.offers.execute_directly(container(duration="PT1M"), caller=ALICE)
    second = await harness.offers.execute_directly(container(duration="PT1M"), caller=ALICE)
    now = START + timedelta(seconds=2)
    claimed = await harness.store.claims.claim_due(
        worker=WORKER, now=now, lease_until=now + timedelta(minutes=1), limit=10
    )
    assert {s.uuid for s in claimed} == {first.uuid, second.uuid}
    steps = [await advance(s, harness.platform, now=now, timings=TIMINGS) for s in claimed]
    bad = next(step for step in steps if step.session_uuid == first.uuid)
    # A value no database holds (a NUL for PostgreSQL, a lone surrogate for both), as a
    # platform's text would be if it ever reached the store unescaped.
    bad.messages.append(
        MessageItem(level=MessageLevel.INFO, template="x", message="out\x00put \udcff", time=now)
    )

    before = _said(await harness.read(second.uuid))

    written, _ = await harness.store.claims.commit_advances(steps, worker=WORKER, now=now)

    assert written == [second.uuid], "the neighbour's step is written"
    assert len(_said(await harness.read(second.uuid))) > len(before), "its messages are kept"
    async with harness.database.read() as connection:
        row = (
            await connection.execute(
                sa.select(sessions.c.claimed_by, sessions.c.next_due).where(
                    sessions.c.uuid == str(first.uuid)
                )
            )
        ).one()
    assert row.claimed_by is None, "the refused one is released, not held for its lease"
    assert row.next_due.replace(tzinfo=UTC) == now + UNWRITTEN_STEP_RETRY, "retried soon"
    assert not any("put" in text for text in _said(await harness.read(first.uuid)))

    # Its next pass (without the bad value) carries it to the end like the other.
    for second_count in range(3, 40):
        await harness.settle(START + timedelta(seconds=second_count))
    for uuid in (first.uuid, second.uuid):
        ended = await harness.read(uuid)
        assert ended.phase is SessionPhase.COMPLETED, (uuid, ended.phase)
