"""``GET /healthz``: 200 once the broker has migrated its database and can write to it.

A database that cannot be read answers 503 ``unavailable``: one ping, shared by every caller
and reused for a second (:mod:`execbroker.api.readiness`), so that a load balancer polling
hard costs the database one round trip a second, and a database that stops answering is
reported within that second (or once the ping's 5 s have run out, if it hangs).

One that reads but cannot take writes (a full disk, a read-only file system, damaged pages:
see :mod:`execbroker.storage.health`) answers 503 ``degraded``, and ``database_message`` says
what is wrong: such a broker cannot accept a request, so a load balancer should pass it by.

The body also says whether the platform can be used now. A platform that cannot (e.g.
Skaha's refresh token was refused and an operator must provide a new one) makes the status
``degraded``, still with 200: the broker serves, and sessions within their budgets wait
for the platform rather than fail; ``platform_message`` says what the operator must do.

A long-lived background task that died (the engine loop, the offer-expiry timer, the
change notifier...) answers 503 ``degraded``, and ``dead_tasks`` names each with how it
ended: such a broker no longer moves sessions on, and only a restart brings the task back.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from execbroker.api.dependencies import Broker, BrokerDep
from execbroker.platforms.base import PlatformHealth
from execbroker.storage.health import StorageHealth

__all__ = ["health_answer", "router"]

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Ready to serve",
    response_class=JSONResponse,
    responses={
        503: {
            "description": "Not ready: the database cannot be reached (unavailable), or it "
            "cannot take writes, or a background task died (degraded; database_message "
            "or dead_tasks says why)."
        }
    },
)
async def healthz(broker: BrokerDep) -> JSONResponse:
    return await health_answer(broker)


async def health_answer(broker: Broker) -> JSONResponse:
    """The answer to ``GET /healthz`` (also given by :mod:`execbroker.api.fastlane`)."""
    failure = await broker.database_ping.failure()
    if failure is not None:  # any database failure means "not ready"
        return JSONResponse(
            {"status": "unavailable", "database": type(failure).__name__}, status_code=503
        )
    storage = await broker.storage.check() if broker.storage else StorageHealth()
    platform = broker.platform.health() if broker.platform else PlatformHealth(available=True)
    dead = broker.background.dead() if broker.background else {}
    body: dict[str, Any] = {
        "status": "ok" if platform.available and storage.ok and not dead else "degraded",
        "database": "writable" if storage.ok else "failing",
        "platform": broker.settings.platform,
        "platform_status": "available" if platform.available else "unavailable",
    }
    if storage.problem:
        body["database_message"] = storage.problem
    if platform.message:
        body["platform_message"] = platform.message
    body.update(platform.details)
    if dead:
        body["dead_tasks"] = dead
    return JSONResponse(body, status_code=200 if storage.ok and not dead else 503)
