"""Learned estimates (issue 17, item 3): after enough starts of an image, the next offer is
planned with the configured percentile of how long they took, and says so; with too few it
keeps the defaults; the history survives a restart and shows in /metrics. Driven by hand on
the mock platform (a compute takes exactly 4 s to start; the default estimate is 1 s), on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from execbroker.model.phases import ComponentPhase
from execbroker.model.records import ComponentRole, SessionRecord
from tests.support.engine import ROLES, container
from tests.support.manual import ALICE, Broker, started

S = timedelta(seconds=1)
COMPUTE_START = 4  # seconds the mock takes to start a compute
UP = (ComponentPhase.AVAILABLE, ComponentPhase.RUNNING)
LEARNING: dict[str, Any] = {
    "mock_prepare_seconds": {**dict.fromkeys(ROLES, 0.0), "compute": COMPUTE_START},
    "estimate_min_observations": 5,
    "estimate_percentile": 90,
    "estimate_window": 50,
}


@asynccontextmanager
async def learning(url: str, tmp: Path) -> AsyncIterator[Broker]:
    async with started(url, tmp, Broker, **LEARNING) as broker:
        yield broker


async def start_computes(broker: Broker, count: int) -> None:
    """Run ``count`` sessions until their compute is up, one after the other."""
    for _ in range(count):
        direct = await broker.offers.execute_directly(container(data=False), caller=ALICE)
        began = broker.clock.now()
        compute = None
        for second in range(1, 30):
            await broker.settle(began + second * S)
            compute = (await broker.read(direct.uuid)).component(ComponentRole.COMPUTE)
            assert compute is not None
            if compute.phase in UP:
                break
        assert compute is not None
        assert compute.phase in UP, [m.message for m in compute.messages]


async def next_offer(broker: Broker) -> SessionRecord:
    offers = await broker.offers.request_offers(container(data=False), caller=ALICE)
    assert offers.offers, [m.message for m in offers.messages]
    return offers.offers[0]


def compute_prepare(offer: SessionRecord) -> timedelta:
    compute = offer.component(ComponentRole.COMPUTE)
    assert compute is not None
    return compute.schedule.prepare_duration


def said(offer: SessionRecord) -> str:
    return " | ".join(m.message or "" for m in offer.messages)


async def test_six_starts_plan_the_next_offer_with_their_p90(
    database_url: str, tmp_path: Path
) -> None:
    async with learning(database_url, tmp_path) as broker:
        before = await next_offer(broker)
        await start_computes(broker, 6)
        after = await next_offer(broker)

    assert compute_prepare(before) == S, "the default estimate (1 s, no slack)"
    assert "estimated from" not in said(before)
    assert compute_prepare(after) == COMPUTE_START * S
    image = container()["executable"]["image"]["locations"][0]
    assert (
        f"compute start estimated from the last 6 starts of the image '{image}': p90 PT4S"
        in said(after)
    )


async def test_too_few_starts_keep_the_defaults(database_url: str, tmp_path: Path) -> None:
    async with learning(database_url, tmp_path) as broker:
        await start_computes(broker, 4)
        offer = await next_offer(broker)

    assert compute_prepare(offer) == S
    assert "estimated from" not in said(offer)


async def test_the_history_survives_a_restart_and_shows_in_metrics(
    database_url: str, tmp_path: Path
) -> None:
    async with learning(database_url, tmp_path) as broker:
        await start_computes(broker, 5)
    async with learning(database_url, tmp_path) as restarted:
        offer = await next_offer(restarted)
        assert compute_prepare(offer) == COMPUTE_START * S, "read back from the database"
        assert "the last 5 starts" in said(offer)
        image = container()["executable"]["image"]["locations"][0]
        labels = {"platform": "mock", "role": "compute", "kind": "docker-container"}
        estimate = REGISTRY.get_sample_value(
            "execbroker_preparing_estimate_seconds", {**labels, "image": image}
        )
        assert estimate == COMPUTE_START
        observed = REGISTRY.get_sample_value("execbroker_preparing_seconds_count", labels)
        assert observed is not None
        assert observed >= 5
