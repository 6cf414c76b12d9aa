"""``GET /healthz``: 200 once the broker has migrated its database and can reach it."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from execbroker.api.dependencies import BrokerDep

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Ready to serve", response_class=JSONResponse)
async def healthz(broker: BrokerDep) -> JSONResponse:
    try:
        async with broker.database.read() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except Exception as failure:  # any database failure means "not ready"
        return JSONResponse(
            {"status": "unavailable", "database": type(failure).__name__}, status_code=503
        )
    return JSONResponse({"status": "ok", "platform": broker.settings.platform})
