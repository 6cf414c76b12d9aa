"""The composition root: what one broker process holds, and how every service is built.

In the manner of safir and gafaelfawr (SQR-072): a :class:`ProcessContext` is built once
from the settings and holds the process's singletons (the database, the store, the
platform, the change feed, the engine, the authenticator and the background manager);
a :class:`Factory` builds each service from it with explicit collaborators. The FastAPI
lifespan (:mod:`execbroker.main`) and the tests that drive a broker by hand build through
here, so that there is one wiring of the broker::

    context = await ProcessContext.from_settings(settings, clock)
    await context.start()
    try:
        ...  # serve: Factory(context).create_offer_service(), ...
    finally:
        await context.aclose()

The services hold no per-request state (each store call opens its own transaction), so
one of each serves every request: the lifespan builds them once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Self

from execbroker.api.writers import WRITERS
from execbroker.auth.identity import Authenticator
from execbroker.auth.setup import build_authenticator
from execbroker.background import BackgroundTaskManager
from execbroker.clock import Clock, SystemClock
from execbroker.config import Settings
from execbroker.lifecycle.changes import ChangeFeed, SessionChanges
from execbroker.lifecycle.engine import Engine
from execbroker.lifecycle.notify import PostgresNotifier
from execbroker.lifecycle.retention import RetentionJob
from execbroker.lifecycle.rules import EngineTimings
from execbroker.planning.profile import PlatformProfile, estimate_book, profile_from_settings
from execbroker.platforms.factory import build_platform
from execbroker.platforms.instrumented import InstrumentedPlatform
from execbroker.services.backfill import BackfillService
from execbroker.services.estimates import EstimateRecorder
from execbroker.services.expiry import ExpiryTimer
from execbroker.services.occupancy import OccupancyService
from execbroker.services.offers import OfferLimits, OfferService
from execbroker.services.sessions import SessionLimits, SessionService
from execbroker.storage.credentials import CredentialRows
from execbroker.storage.database import Database
from execbroker.storage.estimates import PreparingTimes
from execbroker.storage.health import StorageProbe
from execbroker.storage.startup import open_database
from execbroker.storage.store import BrokerStore

__all__ = ["Factory", "ProcessContext"]

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ProcessContext:
    """The singletons of one broker process, built once from its settings.

    :meth:`from_settings` builds them (opening and migrating the database: a database that
    cannot be used is a one-line :class:`~execbroker.exceptions.StartupError`);
    :meth:`start` starts the platform and the background work; :meth:`aclose` stops
    everything and closes what was opened, in the reverse order.
    """

    settings: Settings
    clock: Clock
    database: Database
    store: BrokerStore
    profile: PlatformProfile
    platform: InstrumentedPlatform
    feed: ChangeFeed
    engine: Engine
    changes: SessionChanges
    expiry: ExpiryTimer
    authenticator: Authenticator
    storage: StorageProbe
    background: BackgroundTaskManager
    estimates: EstimateRecorder
    _started: bool = field(default=False, init=False)

    @classmethod
    async def from_settings(cls, settings: Settings, clock: Clock | None = None) -> Self:
        """Everything ``settings`` describe, built and wired but not started."""
        clock = clock or SystemClock()
        database = await open_database(settings)
        try:
            return cls._build(settings, clock, database)
        except BaseException:
            await database.dispose()
            raise

    @classmethod
    def _build(cls, settings: Settings, clock: Clock, database: Database) -> Self:
        background = BackgroundTaskManager()
        store = BrokerStore(
            database,
            pool=settings.platform,
            longest_booking=settings.planning.max_duration + settings.planning.max_preparation,
            clock=clock,
            lock_timeout=settings.database.booking_lock_timeout.total_seconds(),
        )
        platform = InstrumentedPlatform(
            build_platform(settings, clock, background, credential_store=CredentialRows(database))
        )
        estimates = EstimateRecorder(PreparingTimes(database), estimate_book(settings))
        feed = ChangeFeed(
            recheck=settings.server.change_recheck_local.total_seconds(),
            max_per_user=settings.server.max_waiters_per_user,
        )
        engine = Engine(
            store=store,
            platform=platform,
            clock=clock,
            changes=feed,
            late_steps=background.group("late-steps"),
            timings=EngineTimings(
                budget_slack=settings.effective_budget_slack,
                queue_budget=settings.skaha.queue_budget,
                poll_interval=settings.engine.poll_interval,
                end_warning=settings.engine.end_warning,
                call_deadline=settings.engine.effective_call_deadline,
            ),
            step_deadline=settings.engine.step_deadline.total_seconds(),
            batch_size=settings.engine.batch_size,
            batch_window=settings.engine.batch_window.total_seconds(),
            lease=settings.engine.lease,
            retry=settings.engine.retry,
            single_process=database.is_sqlite,
            learn=estimates.record,
        )
        changes = SessionChanges(feed, engine=engine.wake, freed=engine.freed)
        profile = profile_from_settings(settings, estimates.book)
        if settings.planning.backfill:
            engine.backfill = BackfillService(
                store=store,
                profile=profile,
                platform=platform,
                clock=clock,
                changes=changes,
                freed=engine.freed,
            ).run_pass
        return cls(
            settings=settings,
            clock=clock,
            database=database,
            store=store,
            profile=profile,
            platform=platform,
            feed=feed,
            engine=engine,
            changes=changes,
            expiry=ExpiryTimer(
                store=store,
                clock=clock,
                changes=changes,
                interval=settings.engine.expiry_interval.total_seconds(),
            ),
            authenticator=build_authenticator(
                settings.auth, tokens_file=settings.effective_tokens_file, database=database
            ),
            storage=StorageProbe(
                database, clock=clock, min_free_bytes=settings.database.healthz_min_free_bytes
            ),
            background=background,
            estimates=estimates,
        )

    async def start(self, *, loops: bool = True) -> None:
        """Start the platform, hear the other brokers (PostgreSQL), reconcile with the
        platform, and (unless ``loops`` is false: a test drives the engine by hand) start
        the engine, the expiry timer, the storage probe and retention.
        """
        self._started = True
        await self.platform.start()
        await self.estimates.load()
        if not loops:
            return
        if not self.database.is_sqlite:
            await self._hear_other_brokers()
        # Reconcile before serving: resume what was under way, release what is orphaned.
        await self.engine.reconcile()
        background = self.background
        engine, expiry = self.engine, self.expiry
        background.loop("engine", engine.run_pass, retry=engine.idle, wake=engine.wake)
        background.loop("expiry", expiry.run_pass, retry=expiry.interval, wake=expiry.wake)
        self.storage.start()
        if self.settings.database.retention is not None:
            retention = RetentionJob(
                database=self.database,
                clock=self.clock,
                keep=self.settings.database.retention,
                interval=self.settings.database.retention_interval.total_seconds(),
            )
            background.loop("retention", retention.run_pass, retry=retention.interval)
        WRITERS.start()

    async def _hear_other_brokers(self) -> None:
        """Several brokers may share this database: hear each other's changes (NOTIFY)."""
        # Only waiters need waking: the process that made a change pokes its own engine,
        # and poking every engine at every change elsewhere would break up their batches.
        notifier = PostgresNotifier(
            self.database.url,
            deliver=self.feed.deliver,
            connect_args=self.database.postgres.connect_args(),
        )
        notifier.start(self.background)
        await notifier.listening()
        self.feed.share(
            outbox=notifier.send, recheck=self.settings.server.change_recheck_shared.total_seconds()
        )

    async def aclose(self) -> None:
        """Stop the background work and the platform, and close what was opened."""
        if self._started:
            WRITERS.stop()
            await self.storage.stop()
            await self.background.stop()
            await self.platform.stop()
        else:
            await self.background.stop()
        await self.database.dispose()
        await self.authenticator.aclose()


class Factory:
    """Builds the services of one process from its :class:`ProcessContext`."""

    def __init__(self, context: ProcessContext) -> None:
        self._context = context

    def create_session_service(self) -> SessionService:
        """Reading sessions, applying updates, expiring offers."""
        context = self._context
        return SessionService(
            store=context.store,
            clock=context.clock,
            profile=context.profile,
            changes=context.changes,
            expiry=context.expiry,
            limits=SessionLimits.from_settings(context.settings),
            platform=context.platform,
        )

    def create_occupancy_service(self) -> OccupancyService:
        """The operator's calendar of the pool."""
        context = self._context
        return OccupancyService(store=context.store, clock=context.clock, profile=context.profile)

    def create_offer_service(self, sessions: SessionService | None = None) -> OfferService:
        """Planning offer sets and direct runs (``sessions``: the session service that
        works out a direct run's extension limit; a new one if not given).
        """
        context = self._context
        return OfferService(
            store=context.store,
            database=context.database,
            planning=context.settings,
            limits=OfferLimits.from_settings(context.settings),
            profile=context.profile,
            clock=context.clock,
            platform=context.platform,
            changes=context.changes,
            expiry=context.expiry,
            sessions=sessions or self.create_session_service(),
        )
