"""A Python client of an IVOA ExecutionBroker (the Calycopis-openapi v1.0 contract).

:class:`BrokerClient` blocks; :class:`AsyncBrokerClient` is the same API for asyncio. Both
take the broker's URL and token from their arguments, from ``EXECBROKER_URL`` and
``EXECBROKER_TOKEN``, or — for a broker on this machine — from the tokens file the broker
wrote on its first start::

    from execbroker.client import BrokerClient, best_offer, summarise_offers

    with BrokerClient() as broker:
        offers = broker.request_offers("tests/data/container-with-data-request.yaml")
        for offer in summarise_offers(offers):
            print(offer.index, offer.start, offer.duration, offer.cores, offer.memory_gib)
        session = broker.accept(best_offer(offers))
        session = broker.wait(session)              # the long-poll, until it has ended
        print(session.phase)                        # COMPLETED, FAILED or CANCELLED

Documents are the pydantic models of :mod:`execbroker.model.wire`; errors are the
:class:`BrokerError` hierarchy of :mod:`execbroker.client.errors`.
"""

from execbroker.client.aio import AsyncBrokerClient
from execbroker.client.errors import (
    BadRequestError,
    BrokerError,
    BrokerServerError,
    BrokerStatusError,
    BrokerUnreachableError,
    ConflictError,
    ForbiddenError,
    NoOffersError,
    NotFoundError,
    RefusedError,
    TooManyRequestsError,
    UnauthorizedError,
    UnexpectedResponseError,
    UnprocessableError,
    WaitTimeoutError,
)
from execbroker.client.offers import OfferSummary, best_offer, pick_offer, summarise_offers
from execbroker.client.protocol import ComponentPhaseEvent, PhaseEvent, has_reached
from execbroker.client.reading import components, exit_code
from execbroker.client.settings import ClientSettings, Connection, resolve_connection
from execbroker.client.sync import BrokerClient
from execbroker.model.phases import ComponentPhase, SessionPhase
from execbroker.model.wire import ExecutionRequest, ExecutionSession, OfferSetResponse

__all__ = [
    "AsyncBrokerClient",
    "BadRequestError",
    "BrokerClient",
    "BrokerError",
    "BrokerServerError",
    "BrokerStatusError",
    "BrokerUnreachableError",
    "ClientSettings",
    "ComponentPhase",
    "ComponentPhaseEvent",
    "ConflictError",
    "Connection",
    "ExecutionRequest",
    "ExecutionSession",
    "ForbiddenError",
    "NoOffersError",
    "NotFoundError",
    "OfferSetResponse",
    "OfferSummary",
    "PhaseEvent",
    "RefusedError",
    "SessionPhase",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnexpectedResponseError",
    "UnprocessableError",
    "WaitTimeoutError",
    "best_offer",
    "components",
    "exit_code",
    "has_reached",
    "pick_offer",
    "resolve_connection",
    "summarise_offers",
]
