"""The FastAPI application: routes, error handling, and the lifespan that owns everything."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import RootModel
from pydantic.json_schema import models_json_schema

import execbroker
from execbroker.api.dependencies import Broker
from execbroker.api.errors import (
    UnhandledErrors,
    answer_not_found,
    install_error_handlers,
    install_refusal_handler,
)
from execbroker.api.fastlane import SessionReads
from execbroker.api.formats.limits import ParseLimits
from execbroker.api.handlers import (
    admin,
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
from execbroker.api.urls import SlashRedirects, UnroutedPaths
from execbroker.clock import Clock
from execbroker.config import Settings, load_settings
from execbroker.factory import Factory, ProcessContext
from execbroker.model.wire import (
    ErrorResponse,
    ExecutionRequest,
    ExecutionSession,
    OfferSetResponse,
    Update,
)
from execbroker.web import docs
from execbroker.web import router as dashboard_router

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


class AbstractUpdate(RootModel[Update]):
    """An update to a session, discriminated on ``kind`` (for the OpenAPI document)."""


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """The broker as an ASGI app; its lifespan builds, starts and closes the process
    context (:mod:`execbroker.factory`).
    """
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = await ProcessContext.from_settings(settings, clock)
        try:
            await context.start()
            factory = Factory(context)
            sessions = factory.create_session_service()
            app.state.broker = Broker(
                settings=settings,
                database=context.database,
                offers=factory.create_offer_service(sessions),
                sessions=sessions,
                limits=ParseLimits(max_bytes=settings.server.max_body_bytes),
                authenticator=context.authenticator,
                platform=context.platform,
                storage=context.storage,
                background=context.background,
                occupancy=factory.create_occupancy_service(),
            )
            logger.info(
                "broker ready",
                extra={
                    "platform": settings.platform,
                    "database": context.database.url.get_backend_name(),
                },
            )
            try:
                yield
            finally:
                await app.state.broker.database_ping.aclose()
        finally:
            await context.aclose()

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
    app.router.default = fallback = SlashRedirects(
        app.router, settings, otherwise=answer_not_found(app.router.not_found)
    )
    install_error_handlers(app)
    install_refusal_handler(app)
    # The innermost: what they answer passes every other middleware like any answer.
    app.add_middleware(SessionReads)
    app.add_middleware(UnroutedPaths, fallback=fallback)
    _install_limits(app, settings)
    app.add_middleware(
        HeaderLimits,
        max_bytes=settings.server.max_header_bytes,
        max_count=settings.server.max_header_count,
    )
    # Inside the security headers, so that a 500 carries them like every other answer.
    app.add_middleware(UnhandledErrors)
    app.add_middleware(SecurityHeaders)
    for module in (requests, offersets, sessions, components, health, metrics, admin):
        app.include_router(module.router)
    app.include_router(dashboard_router)
    app.include_router(docs.router)

    _install_openapi(app)
    return app


def _install_limits(app: FastAPI, settings: Settings) -> None:
    """Deadlines and rates that bound what a client costs before and while it is served
    (outermost last: the rate limit answers before the body's deadline starts).
    """
    app.add_middleware(BodyDeadline, seconds=settings.server.body_timeout.total_seconds())
    app.add_middleware(
        AnonymousRateLimit,
        rate=settings.server.anonymous_rate,
        burst=settings.server.anonymous_burst,
        trusted_proxies=settings.server.trusted_proxies,
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
