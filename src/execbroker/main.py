"""The FastAPI application: routes, error handling, and the lifespan that owns everything."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import RootModel
from pydantic.json_schema import models_json_schema

import execbroker
from execbroker.api.dependencies import Broker
from execbroker.api.errors import (
    UnhandledErrors,
    install_error_handlers,
    install_refusal_handler,
)
from execbroker.api.formats.limits import ParseLimits
from execbroker.api.handlers import (
    components,
    health,
    metrics,
    offersets,
    requests,
    sessions,
)
from execbroker.api.handlers.openapi_bodies import document_parameter_errors
from execbroker.api.header_limits import HeaderLimits
from execbroker.api.limits import AnonymousRateLimit, BodyDeadline
from execbroker.api.security import SecurityHeaders
from execbroker.api.urls import SlashRedirects
from execbroker.api.writers import WRITERS
from execbroker.auth.setup import build_authenticator
from execbroker.background import BackgroundTaskManager
from execbroker.clock import Clock, SystemClock
from execbroker.config import Settings, load_settings
from execbroker.lifecycle.changes import ChangeFeed
from execbroker.lifecycle.engine import Engine
from execbroker.lifecycle.notify import PostgresNotifier
from execbroker.lifecycle.retention import RetentionJob
from execbroker.lifecycle.rules import EngineTimings
from execbroker.model.wire import (
    ErrorResponse,
    ExecutionRequest,
    ExecutionSession,
    OfferSetResponse,
    Update,
)
from execbroker.planning.profile import profile_from_settings
from execbroker.platforms.factory import build_platform
from execbroker.platforms.instrumented import InstrumentedPlatform
from execbroker.services.expiry import ExpiryTimer
from execbroker.services.offers import OfferService
from execbroker.services.sessions import SessionService
from execbroker.storage.database import Database
from execbroker.storage.health import StorageProbe
from execbroker.storage.retention import stored_records
from execbroker.storage.startup import open_database
from execbroker.storage.store import BrokerStore
from execbroker.web import docs
from execbroker.web import router as dashboard_router

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


class AbstractUpdate(RootModel[Update]):
    """An update to a session, discriminated on ``kind`` (for the OpenAPI document)."""


async def _hear_other_brokers(
    database: Database, changes: ChangeFeed, settings: Settings, background: BackgroundTaskManager
) -> None:
    """Several brokers may share this database: hear each other's changes (NOTIFY)."""

    # Only waiters need waking: the process that made a change pokes its own engine, and
    # poking every engine at every change elsewhere would break up their batches.
    notifier = PostgresNotifier(
        database.url, deliver=changes.deliver, connect_args=database.postgres.connect_args()
    )
    notifier.start(background)
    await notifier.listening()
    changes.outbox = notifier.send
    changes.recheck = settings.change_recheck_shared


# The lifespan wires every collaborator in one readable place, hence its length.
def create_app(  # noqa: PLR0915
    settings: Settings | None = None, *, clock: Clock | None = None
) -> FastAPI:
    """The broker as an ASGI app; it starts its database and timers in its lifespan."""
    settings = settings or load_settings()
    clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = await open_database(settings)
        background = BackgroundTaskManager()
        storage = StorageProbe(
            database, clock=clock, min_free_bytes=settings.healthz_min_free_bytes
        )
        authenticator = build_authenticator(settings, database)
        store = BrokerStore(
            database,
            pool=settings.platform,
            longest_booking=settings.max_duration + settings.max_preparation,
            clock=clock,
            lock_timeout=settings.booking_lock_timeout,
        )
        profile = profile_from_settings(settings)
        platform = InstrumentedPlatform(build_platform(settings, clock, background))
        await platform.start()
        changes = ChangeFeed(
            recheck=settings.change_recheck_local, max_per_user=settings.max_waiters_per_user
        )
        engine = Engine(
            store=store,
            platform=platform,
            clock=clock,
            changes=changes,
            late_steps=background.group("late-steps"),
            timings=EngineTimings(
                budget_slack=timedelta(seconds=settings.budget_slack),
                poll_interval=timedelta(seconds=settings.poll_interval),
                end_warning=timedelta(seconds=settings.end_warning),
                call_deadline=settings.call_deadline,
            ),
            step_deadline=settings.engine_step_deadline,
            batch_size=settings.engine_batch_size,
            batch_window=settings.engine_batch_window,
            lease=timedelta(seconds=settings.engine_lease),
            retry=timedelta(seconds=settings.engine_retry),
            single_process=database.is_sqlite,
        )

        def changed(uuid: UUID) -> None:
            changes.publish(uuid)
            engine.poke()

        session_service = SessionService(
            store=store,
            clock=clock,
            profile=profile,
            max_duration=settings.max_duration,
            active_limit=settings.quota_active_sessions,
            on_change=changed,
        )
        expiry = ExpiryTimer(
            sessions=session_service,
            store=store,
            clock=clock,
            interval=settings.expiry_interval,
        )
        offer_service = OfferService(
            store=store,
            settings=settings,
            profile=profile,
            clock=clock,
            on_offers_made=expiry.notice,
            on_session_started=changed,
            shape=platform.shape,
            extension=lambda booking, session, now: session_service.work_out_extension_in(
                booking, session, now=now
            ),
            stored_records=lambda owner: stored_records(database, owner),
        )
        retention = _retention_job(database, settings, clock)
        app.state.broker = Broker(
            settings=settings,
            database=database,
            offers=offer_service,
            sessions=session_service,
            limits=ParseLimits(max_bytes=settings.max_body_bytes),
            changes=changes,
            authenticator=authenticator,
            platform=platform,
            storage=storage,
            background=background,
        )
        if not database.is_sqlite:
            await _hear_other_brokers(database, changes, settings, background)
        # Reconcile before serving: resume what was under way, release what is orphaned.
        await engine.reconcile()
        background.loop("engine", engine.run_pass, retry=engine.idle, wake=engine.wake)
        background.loop("expiry", expiry.run_pass, retry=expiry.interval, wake=expiry.wake)
        storage.start()
        if retention is not None:
            background.loop("retention", retention.run_pass, retry=retention.interval)
        WRITERS.start()
        logger.info(
            "broker ready",
            extra={"platform": settings.platform, "database": database.url.get_backend_name()},
        )
        try:
            yield
        finally:
            WRITERS.stop()
            await storage.stop()
            await background.stop()
            await platform.stop()
            await database.dispose()
            await authenticator.aclose()

    app = FastAPI(
        title="execbroker",
        summary="IVOA ExecutionBroker web-service API (Calycopis-openapi v1.0)",
        version=execbroker.__version__,
        lifespan=lifespan,
        # Starlette's own slash redirects echo the Host header; ours use base_url.
        redirect_slashes=False,
        # Ours (execbroker.web.docs) load nothing from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.router.default = SlashRedirects(app.router, settings, otherwise=app.router.not_found)
    install_error_handlers(app)
    install_refusal_handler(app)
    _install_limits(app, settings)
    app.add_middleware(
        HeaderLimits, max_bytes=settings.max_header_bytes, max_count=settings.max_header_count
    )
    # Inside the security headers, so that a 500 carries them like every other answer.
    app.add_middleware(UnhandledErrors)
    app.add_middleware(SecurityHeaders)
    for module in (requests, offersets, sessions, components, health, metrics):
        app.include_router(module.router)
    app.include_router(dashboard_router)
    app.include_router(docs.router)

    _install_openapi(app)
    return app


def _retention_job(database: Database, settings: Settings, clock: Clock) -> RetentionJob | None:
    if settings.retention is None:
        return None
    return RetentionJob(
        database=database,
        clock=clock,
        keep=settings.retention,
        interval=settings.retention_interval,
    )


def _install_limits(app: FastAPI, settings: Settings) -> None:
    """Deadlines and rates that bound what a client costs before and while it is served
    (outermost last: the rate limit answers before the body's deadline starts)."""
    app.add_middleware(BodyDeadline, seconds=settings.body_timeout)
    app.add_middleware(
        AnonymousRateLimit,
        rate=settings.anonymous_rate,
        burst=settings.anonymous_burst,
        trusted_proxies=settings.trusted_proxies,
    )


def _install_openapi(app: FastAPI) -> None:
    """The OpenAPI document, with the wire models' schemas under components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        _, definitions = models_json_schema(
            [
                (ExecutionRequest, "validation"),
                (AbstractUpdate, "validation"),
                (OfferSetResponse, "serialization"),
                (ExecutionSession, "serialization"),
                (ErrorResponse, "serialization"),
            ],
            ref_template="#/components/schemas/{model}",
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(
            definitions.get("$defs", {})
        )
        document_parameter_errors(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
