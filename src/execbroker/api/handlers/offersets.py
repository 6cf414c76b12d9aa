"""``GET /offersets/{uuid}``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from execbroker.api.dependencies import BrokerDep, Owner, RendererDep
from execbroker.api.handlers.openapi_bodies import content_of, error_responses
from execbroker.api.handlers.paths import UuidPath, parse_uuid
from execbroker.api.responses import OutputFormat, respond

__all__ = ["router"]

router = APIRouter(tags=["offers"])


@router.get(
    "/offersets/{uuid}",
    operation_id="OfferSetSelect",
    summary="An offer set and its offers, with their current phases",
    response_class=Response,
    responses={
        200: {"description": "The offer set.", "content": content_of("OfferSetResponse")},
        **error_responses(404, 406),
    },
)
async def get_offer_set(
    uuid: UuidPath, fmt: OutputFormat, broker: BrokerDep, owner: Owner, render: RendererDep
) -> Response:
    record = await broker.offers.get_offer_set(parse_uuid(uuid, "offer set"), owner=owner)
    return respond(render.offer_set(record), fmt, root="offers-response")
