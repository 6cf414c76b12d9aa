"""``GET /metrics``: the broker's counters in the Prometheus text format.

Open like ``/healthz`` (scrapers rarely carry user tokens): it holds counts only, nothing of
any user's records. Operators who want it private keep it off the public ingress.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from execbroker.api.dependencies import BrokerDep
from execbroker.metrics import SESSIONS
from execbroker.model.phases import SessionPhase

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(broker: BrokerDep) -> Response:
    counts = await broker.sessions.phase_counts()
    for phase in SessionPhase:
        SESSIONS.labels(phase.value).set(counts.get(phase.value, 0))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
