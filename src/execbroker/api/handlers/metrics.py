"""``GET /metrics``: the broker's counters in the Prometheus text format.

Open like ``/healthz`` by default (scrapers rarely carry user tokens): it holds counts only,
nothing of any user's records, and anonymous callers are rate-limited per address. With
``metrics_token_required`` it needs a valid bearer token, any user's (give the scraper one).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from execbroker.api.dependencies import BrokerDep
from execbroker.exceptions import UnauthorizedError
from execbroker.metrics import SESSIONS
from execbroker.model.phases import SessionPhase

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        401: {"description": "With metrics_token_required: no valid bearer token."},
        429: {"description": "Too many anonymous requests from this address."},
    },
)
async def metrics(request: Request, broker: BrokerDep) -> Response:
    if broker.settings.server.metrics_token_required:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("This broker's metrics need a bearer token")
        await broker.authenticator.username(token.strip())
    counts = await broker.sessions.phase_counts()
    for phase in SessionPhase:
        SESSIONS.labels(phase.value).set(counts.get(phase.value, 0))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
