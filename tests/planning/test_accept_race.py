"""An accept that races its offer's expiry never books the pool twice over (FAULT-PROBES R1).

The accept reads the time before it waits for the pool's lock. Meanwhile the offer expires,
and a booking queued ahead of the accept finds it expired and books the same cores. The
accept must judge the expiry at the instant it holds the lock, as that booking did, and be
refused: otherwise a 4-core pool holds 8 cores.

A clock that moves only when told to puts the expiry exactly between the accept's first
look and its lock, on both databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
import sqlalchemy as sa

from execbroker.auth.identity import Caller
from execbroker.clock import ManualClock, SystemClock
from execbroker.config import Settings
from execbroker.exceptions import ConflictError
from execbroker.factory import Factory, ProcessContext
from execbroker.model.phases import HOLDING_SESSION_PHASES, OfferResult, SessionPhase
from execbroker.storage.booking import pool_lock_key
from execbroker.storage.tables import sessions
from tests.support.wire import example

ALICE, BOB = Caller("alice"), Caller("bob")
NOW = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=4)
POOL_CORES = 4
ACCEPT = {"kind": "uri:enum-value-update", "path": "/phase", "value": "ACCEPTED"}


def _all_four_cores() -> dict[str, Any]:
    """Every core of the pool, for five minutes in one fixed slot a day ahead."""
    document: dict[str, Any] = example("notebook-request.yaml")
    document["compute"]["cores"] = {"min": POOL_CORES, "max": POOL_CORES}
    document["compute"]["memory"] = {"min": 1, "max": 1}
    document["schedule"] = {"requested": {"duration": "PT5M", "start": "2030-01-02T10:00:00Z/PT1M"}}
    return document


def _settings(url: str, tmp: Path, **overrides: Any) -> Settings:
    return Settings(
        **{
            "data_dir": tmp,
            "database_url": url,
            "capacity_cores": POOL_CORES,
            "offer_ttl": TTL.total_seconds(),
            **overrides,
        }
    )


class Broker:
    """The services, as the factory builds them, on a clock that moves when told to."""

    def __init__(self, context: ProcessContext) -> None:
        self.clock = cast(ManualClock, context.clock)
        self.database = context.database
        factory = Factory(context)
        self.sessions = factory.create_session_service()
        self.offers = factory.create_offer_service(self.sessions)

    async def cores_held_at_most(self) -> int:
        """The most cores the calendar holds at any instant: accepted sessions, and offers
        unexpired by the clock."""
        async with self.database.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(
                        sessions.c.phase,
                        sessions.c.expires,
                        sessions.c.book_start,
                        sessions.c.book_end,
                        sessions.c.cores,
                    )
                )
            ).all()
        now = self.clock.now()
        live = [
            r
            for r in rows
            if SessionPhase(r.phase) in HOLDING_SESSION_PHASES
            or (r.phase == SessionPhase.OFFERED.value and r.expires > now)
        ]
        return max(
            (sum(o.cores for o in live if o.book_start <= r.book_start < o.book_end) for r in live),
            default=0,
        )


@asynccontextmanager
async def pool_lock_held(broker: Broker) -> AsyncIterator[Callable[[], None]]:
    """Hold the pool's booking lock until the returned function is called: SQLite's write
    lock, or PostgreSQL's advisory lock from another connection."""
    release = asyncio.Event()
    held = asyncio.Event()
    if broker.database.is_sqlite:

        async def hold() -> None:
            async with broker.database.write():
                held.set()
                await release.wait()

    else:
        url = broker.database.url.set(drivername="postgresql").render_as_string(hide_password=False)

        async def hold() -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other:
                await other.execute("SELECT pg_advisory_lock(%s)", (pool_lock_key("mock"),))
                held.set()
                await release.wait()
                await other.execute("SELECT pg_advisory_unlock_all()")

    holder = asyncio.create_task(hold())
    await held.wait()
    try:
        yield release.set
    finally:
        release.set()
        await holder


async def _started(work: Awaitable[Any]) -> asyncio.Task[Any]:
    """``work`` as a task, once it has had time to get as far as the lock."""
    task = asyncio.ensure_future(work)
    await asyncio.sleep(0.3)
    assert not task.done(), "it should be waiting for the pool's lock"
    return task


@pytest.fixture
async def broker(database_url: str, tmp_path: Path) -> AsyncIterator[Broker]:
    context = await ProcessContext.from_settings(
        _settings(database_url, tmp_path, max_offers=1), ManualClock(NOW)
    )
    try:
        yield Broker(context)
    finally:
        await context.aclose()


async def test_an_accept_that_waited_past_the_expiry_is_refused_and_nothing_overbooks(
    broker: Broker,
) -> None:
    mine = await broker.offers.request_offers(_all_four_cores(), caller=ALICE)
    assert mine.result is OfferResult.YES, mine.messages
    offer = mine.offers[0]
    assert offer.expires == NOW + TTL
    broker.clock.advance(TTL - timedelta(milliseconds=10))  # 10 ms before the expiry

    async with pool_lock_held(broker) as release:
        # Bob's booking is queued first, alice's accept behind it: she looked at the
        # clock before the expiry and passed the early check.
        theirs = await _started(broker.offers.request_offers(_all_four_cores(), caller=BOB))
        accept = await _started(broker.sessions.apply_update(offer.uuid, ACCEPT, caller=ALICE))
        broker.clock.advance(timedelta(milliseconds=20))  # the offer expires meanwhile
        release()
        bobs = await theirs
        with pytest.raises(ConflictError, match="expired"):
            await accept

    # Bob was right to book the cores alice's offer no longer held; alice was told it
    # expired, and the pool never holds more than it has.
    if broker.database.is_sqlite:  # bob's booking ran first, after the expiry
        assert bobs.result is OfferResult.YES, bobs.messages
    assert await broker.cores_held_at_most() <= POOL_CORES
    reread = await broker.sessions.get_session(offer.uuid, caller=ALICE)
    assert reread.phase is SessionPhase.EXPIRED


async def test_an_accept_in_time_still_wins_over_a_later_booking(broker: Broker) -> None:
    mine = await broker.offers.request_offers(_all_four_cores(), caller=ALICE)
    offer = mine.offers[0]
    broker.clock.advance(TTL - timedelta(milliseconds=10))

    accepted = await broker.sessions.apply_update(offer.uuid, ACCEPT, caller=ALICE)
    assert accepted.phase is SessionPhase.ACCEPTED
    broker.clock.advance(timedelta(milliseconds=20))  # past the offer's expiry
    bobs = await broker.offers.request_offers(_all_four_cores(), caller=BOB)

    assert bobs.result is OfferResult.NO
    assert await broker.cores_held_at_most() == POOL_CORES


class _SlowClock(SystemClock):
    """A replica whose clock is ten seconds behind the others'."""

    def now(self) -> datetime:
        return super().now() - timedelta(seconds=10)


@pytest.mark.postgres
async def test_replicas_whose_clocks_disagree_judge_expiry_by_the_database(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL database")
    settings = _settings(database_url, tmp_path, offer_ttl=1)
    # Two replicas of the broker on one database, one of them with a clock 10 s behind.
    first = await ProcessContext.from_settings(settings, SystemClock())
    second = await ProcessContext.from_settings(settings, _SlowClock())
    try:
        on_time = Factory(first).create_offer_service()
        behind = Factory(second).create_session_service()
        offer = (await on_time.request_offers(_all_four_cores(), caller=ALICE)).offers[0]
        await asyncio.sleep(1.2)
        # The slow replica still thinks the offer has 9 seconds to live; the database
        # says it expired, as it told every booking made since.
        with pytest.raises(ConflictError, match="expired"):
            await behind.apply_update(offer.uuid, ACCEPT, caller=ALICE)
        theirs = await on_time.request_offers(_all_four_cores(), caller=BOB)
        assert theirs.result is OfferResult.YES, theirs.messages
    finally:
        await second.aclose()
        await first.aclose()
