"""Real timings on Skaha (issue 17, item 3): a session held in Skaha's queue has the queue
budget, not its preparing budget; one that is starting (Pending with a start time) keeps
its preparing budget. The timings are scaled down: a 2 s estimate and 1 s of slack (the old
budget, 3 s, plays the old 67 s), a queue held for 6 s."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from tests.skaha.conftest import FAST_TIMINGS, TERMINAL, MakeWorld, SkahaWorld
from tests.skaha.documents import headless
from tests.skaha.test_lifecycle import start
from tests.support.engine import texts, until_ended
from tests.support.waiting import eventually
from tests.support.wire import post

SCALED = {
    "prepare_estimates": {"executable": 0.2, "compute": 2, "storage": 0.2, "data": 0.2},
    "planning_slack": 0,
    "budget_slack": 1,
}
OLD_BUDGET = 3  # seconds: the compute's estimate and the slack


async def test_a_session_queued_longer_than_its_old_budget_runs(
    broker: Any, world: SkahaWorld
) -> None:
    world.fake.hold_queue(["headless"])  # Kueue starvation: Pending, no startTime
    async with broker(**world.settings(**SCALED, skaha_queue_budget=30)) as client:
        url = await start(client, headless(1))

        async def compute_messages() -> str:
            return texts((await client.get(url)).json()["compute"])

        said = await eventually(
            compute_messages, lambda text: "is queued since" in text, what="the queued message"
        )
        assert "waiting for the cluster to admit it" in said
        await asyncio.sleep(2 * OLD_BUDGET)  # the scenario: held for twice the old budget
        assert (await client.get(url)).json()["phase"] not in ("CANCELLED", "FAILED")
        world.fake.release_queue()
        session = await until_ended(client, url, seconds=30)

    assert session["phase"] == "COMPLETED", texts(session["compute"])
    compute = texts(session["compute"])
    assert compute.count("is queued since") == 1, "said once"
    assert "was admitted by the cluster after" in compute
    assert world.sessions() == []


async def test_a_session_past_its_queue_budget_is_cancelled(broker: Any, world: SkahaWorld) -> None:
    world.fake.hold_queue(["headless"])
    async with broker(**world.settings(**SCALED, skaha_queue_budget=2)) as client:
        session = await until_ended(client, await start(client, headless(1)), seconds=30)

    assert session["phase"] == "CANCELLED", texts(session["compute"])
    assert "queue budget of PT2S" in texts(session["compute"])
    assert "did not become ready in time" in texts(session)
    assert world.sessions() == [], "deleted from Skaha"


async def test_a_starting_session_past_its_preparing_budget_is_still_cancelled(
    broker: Any, make_world: MakeWorld
) -> None:
    # Admitted at once (no queue at all: even a loaded broker cannot catch it queued), then
    # Pending with a start time for 30 s (a slow image pull).
    world = make_world(
        timings=replace(FAST_TIMINGS, queue=timedelta(0), pull=timedelta(seconds=30))
    )
    async with broker(**world.settings(**SCALED, skaha_queue_budget=60)) as client:
        session = await until_ended(client, await start(client, headless(1)), seconds=30)

    assert session["phase"] == "CANCELLED", texts(session["compute"])
    compute = texts(session["compute"])
    assert f"still preparing after its budget of PT{OLD_BUDGET}S" in compute
    assert "queued" not in compute, "never queued: the queue budget played no part"
    assert world.sessions() == []


async def test_offers_on_skaha_are_planned_from_the_starts_of_their_image(
    broker: Any, world: SkahaWorld
) -> None:
    async with broker(**world.settings(estimate_min_observations=3)) as client:
        # Long enough runs that a loaded broker's poll sees each one Running (a start it
        # never sees is not observed).
        runs = [await start(client, headless(3)) for _ in range(3)]
        for url in runs:
            assert (await until_ended(client, url))["phase"] == "COMPLETED"
        offers = (await post(client, "/requests", headless(1))).json()

    assert offers["result"] == "YES", offers
    said = texts(offers["offers"][0])
    assert f"compute start estimated from the last 3 starts of the image '{TERMINAL}': p90" in (
        said
    )
