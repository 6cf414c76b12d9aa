"""What handlers get injected: the services, the caller's identity, the renderer.

Every dependency is ``async def`` although none awaits anything: FastAPI runs a plain
``def`` dependency in a worker thread, a hop to a thread and back for each one on every
request (with three of them, most of what a refused request cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from execbroker.api.formats.limits import ParseLimits
from execbroker.api.readiness import SharedPing
from execbroker.api.render import Renderer
from execbroker.api.urls import base_url
from execbroker.auth.identity import Authenticator, Caller
from execbroker.background import BackgroundTaskManager
from execbroker.config import Settings
from execbroker.exceptions import UnauthorizedError
from execbroker.platforms.base import Platform
from execbroker.services.occupancy import OccupancyService
from execbroker.services.offers import OfferService
from execbroker.services.sessions import SessionService
from execbroker.storage.database import Database
from execbroker.storage.health import StorageProbe

__all__ = ["Broker", "BrokerDep", "CallerDep", "RendererDep", "caller_for", "no_bearer_token"]


@dataclass
class Broker:
    """The services of one running broker, held on ``app.state.broker``."""

    settings: Settings
    database: Database
    offers: OfferService
    sessions: SessionService
    limits: ParseLimits
    authenticator: Authenticator
    platform: Platform | None = None
    storage: StorageProbe | None = None
    background: BackgroundTaskManager | None = None
    occupancy: OccupancyService | None = None
    # /healthz's database ping, shared by its callers (execbroker.api.readiness).
    database_ping: SharedPing = field(init=False)

    def __post_init__(self) -> None:
        self.database_ping = SharedPing(self.database.ping)


async def _broker(request: Request) -> Broker:
    broker: Broker = request.app.state.broker
    return broker


BrokerDep = Annotated[Broker, Depends(_broker)]


# auto_error=False: we answer missing credentials ourselves, in the broker's error format.
_bearer = HTTPBearer(
    auto_error=False,
    description="A bearer token: one from the broker's tokens file, or a JWT from its OIDC issuer.",
)


async def _caller(
    broker: BrokerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise no_bearer_token()
    return await caller_for(broker, credentials.credentials)


def no_bearer_token() -> UnauthorizedError:
    """The refusal of a request that carries no bearer token."""
    return UnauthorizedError("This needs a bearer token (Authorization: Bearer <token>)")


async def caller_for(broker: Broker, token: str) -> Caller:
    """Who ``token`` is; the authenticator's refusal (401, or 503 when it cannot tell)."""
    identity = await broker.authenticator.identify(token)
    return Caller(
        name=identity.key,
        admin=identity.key in broker.settings.auth.admins,
        display=identity.display,
        token=token,
    )


CallerDep = Annotated[Caller, Depends(_caller)]


async def _renderer(request: Request, broker: BrokerDep, caller: CallerDep) -> Renderer:
    return Renderer(base_url(request, broker.settings), viewer=caller.name)


RendererDep = Annotated[Renderer, Depends(_renderer)]
