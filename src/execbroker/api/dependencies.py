"""What handlers get injected: the services, the caller's identity, the renderer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from execbroker.api.formats import ParseLimits
from execbroker.api.render import Renderer
from execbroker.api.urls import base_url
from execbroker.config import Settings
from execbroker.lifecycle.changes import ChangeFeed
from execbroker.services.offers import OfferService
from execbroker.services.sessions import SessionService
from execbroker.storage.database import Database

__all__ = ["Broker", "BrokerDep", "Owner", "RendererDep"]


@dataclass
class Broker:
    """The services of one running broker, held on ``app.state.broker``."""

    settings: Settings
    database: Database
    offers: OfferService
    sessions: SessionService
    limits: ParseLimits
    changes: ChangeFeed


def _broker(request: Request) -> Broker:
    broker: Broker = request.app.state.broker
    return broker


BrokerDep = Annotated[Broker, Depends(_broker)]


def _owner(broker: BrokerDep) -> str:
    # Authentication arrives with its own issue; until then everything is the default owner's.
    return broker.settings.default_owner


Owner = Annotated[str, Depends(_owner)]


def _renderer(request: Request, broker: BrokerDep) -> Renderer:
    return Renderer(base_url(request, broker.settings))


RendererDep = Annotated[Renderer, Depends(_renderer)]
