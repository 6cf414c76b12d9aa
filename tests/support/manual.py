"""Broker services, an engine and the mock platform on a clock that moves only when told:
for tests that drive the engine's steps by hand, so that each order of events happens
exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from execbroker.auth.identity import Caller
from execbroker.background import BackgroundTaskManager
from execbroker.clock import ManualClock
from execbroker.config import Settings
from execbroker.lifecycle.changes import ChangeFeed
from execbroker.lifecycle.engine import Engine
from execbroker.lifecycle.rules import EngineTimings
from execbroker.model.records import SessionRecord
from execbroker.planning.profile import profile_from_settings
from execbroker.platforms.factory import build_platform
from execbroker.services.offers import OfferService
from execbroker.services.sessions import SessionService
from execbroker.storage.database import Database
from execbroker.storage.store import BrokerStore
from tests.support.engine import ROLES

ALICE = Caller("alice")
START = datetime(2030, 1, 1, tzinfo=UTC)
TIMINGS = EngineTimings(
    budget_slack=timedelta(seconds=60),
    poll_interval=timedelta(seconds=1),
    end_warning=timedelta(seconds=5),
)


class Broker:
    """Services, an engine and the mock platform on a clock that moves when told to."""

    def __init__(self, url: str, tmp: Path, **overrides: Any) -> None:
        self.clock = ManualClock(START)
        self.settings = Settings(
            **{
                "data_dir": tmp,
                "database_url": url,
                "prepare_estimates": dict.fromkeys(ROLES, 1.0),
                "release_estimates": dict.fromkeys(ROLES, 1.0),
                "planning_slack": 0,
                "mock_prepare_seconds": dict.fromkeys(ROLES, 0.0),
                "mock_release_seconds": dict.fromkeys(ROLES, 0.0),
                "mock_run_seconds": 3600,
                **overrides,
            }
        )
        self.database = Database(self.settings.effective_database_url)
        self.store = BrokerStore(self.database, pool="mock", clock=self.clock)
        profile = profile_from_settings(self.settings)
        self.offers = OfferService(
            store=self.store, settings=self.settings, profile=profile, clock=self.clock
        )
        self.sessions = SessionService(
            store=self.store,
            clock=self.clock,
            profile=profile,
            max_duration=self.settings.max_duration,
        )
        self.background = BackgroundTaskManager()
        self.platform = build_platform(self.settings, self.clock, self.background)
        self.engine = Engine(
            store=self.store,
            platform=self.platform,
            clock=self.clock,
            changes=ChangeFeed(),
            late_steps=self.background.group("late-steps"),
            timings=TIMINGS,
        )

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
    """A :class:`Broker` (of ``kind``) with its database migrated and its platform started."""
    made = kind(url, tmp, **overrides)
    await made.database.migrate()
    await made.platform.start()
    try:
        yield made
    finally:
        await made.background.stop()
        await made.platform.stop()
        await made.database.dispose()
