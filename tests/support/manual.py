"""Broker services, an engine and the mock platform on a clock that moves only when told:
for tests that drive the engine's steps by hand, so that each order of events happens
exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID

from execbroker.auth.identity import Caller
from execbroker.clock import ManualClock
from execbroker.config import Settings
from execbroker.factory import Factory, ProcessContext
from execbroker.lifecycle.rules import EngineTimings
from execbroker.model.records import SessionRecord
from tests.support.engine import ROLES

ALICE = Caller("alice")
START = datetime(2030, 1, 1, tzinfo=UTC)
TIMINGS = EngineTimings(
    budget_slack=timedelta(seconds=60),
    poll_interval=timedelta(seconds=1),
    end_warning=timedelta(seconds=5),
)


def manual_settings(url: str, tmp: Path, **overrides: Any) -> Settings:
    """Settings for a hand-driven broker: quick, exact steps on the mock platform."""
    return Settings(
        **{
            "data_dir": tmp,
            "database_url": url,
            "prepare_estimates": dict.fromkeys(ROLES, 1.0),
            "release_estimates": dict.fromkeys(ROLES, 1.0),
            "planning_slack": 0,
            "mock_prepare_seconds": dict.fromkeys(ROLES, 0.0),
            "mock_release_seconds": dict.fromkeys(ROLES, 0.0),
            "mock_run_seconds": 3600,
            # TIMINGS, for the engine the factory builds.
            "budget_slack": TIMINGS.budget_slack.total_seconds(),
            "poll_interval": TIMINGS.poll_interval.total_seconds(),
            "end_warning": TIMINGS.end_warning.total_seconds(),
            **overrides,
        }
    )


class Broker:
    """Services, an engine and the mock platform on a clock that moves when told to, all
    built by the factory (:func:`started` makes one)."""

    def __init__(self, context: ProcessContext) -> None:
        self.context = context
        self.clock = cast(ManualClock, context.clock)
        self.settings = context.settings
        self.database = context.database
        self.store = context.store
        self.platform = context.platform
        self.engine = context.engine
        factory = Factory(context)
        self.sessions = factory.create_session_service()
        self.offers = factory.create_offer_service(self.sessions)

    async def settle(self, at: datetime) -> None:
        """The engine catches up with ``at``."""
        self.clock.set(at)
        for _ in range(20):
            if not await self.engine.run_once():
                return

    async def read(self, uuid: UUID) -> SessionRecord:
        return await self.sessions.get_session(uuid, caller=ALICE)


B = TypeVar("B", bound=Broker)


@asynccontextmanager
async def started(url: str, tmp: Path, kind: type[B], **overrides: Any) -> AsyncIterator[B]:
    """A :class:`Broker` (of ``kind``): its database migrated and its platform started, but
    no background loop: the test drives the engine (:meth:`Broker.settle`)."""
    context = await ProcessContext.from_settings(
        manual_settings(url, tmp, **overrides), ManualClock(START)
    )
    try:
        await context.start(loops=False)
        yield kind(context)
    finally:
        await context.aclose()
