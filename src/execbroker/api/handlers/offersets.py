"""``GET /offersets/{uuid}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from execbroker.api.dependencies import BrokerDep, CallerDep, RendererDep
from execbroker.api.handlers.openapi_bodies import (
    CALLER_ERRORS,
    content_of,
    error_responses,
    schema_ref,
)
from execbroker.api.handlers.paths import UtcInstant, UuidPath, parse_uuid
from execbroker.api.responses import OutputFormat, built, respond

__all__ = ["router"]

router = APIRouter(tags=["offers"])

# A listing entry is an offer set's metadata and result; its URL reads the offers.
_OFFER_SET_LIST = {
    "type": "object",
    "required": ["offersets"],
    "properties": {
        "offersets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["meta", "result"],
                "additionalProperties": False,
                "properties": {
                    "kind": {"type": "string", "format": "uri"},
                    "meta": schema_ref("ComponentMetadata"),
                    "result": schema_ref("OfferResult"),
                },
            },
        }
    },
}


@router.get(
    "/offersets",
    operation_id="OfferSetList",
    summary="The caller's offer sets, newest first",
    response_class=Response,
    responses={
        200: {"description": "The offer sets.", "content": content_of(_OFFER_SET_LIST)},
        **error_responses(*CALLER_ERRORS, 406),
    },
)
async def list_offer_sets(
    fmt: OutputFormat,
    broker: BrokerDep,
    caller: CallerDep,
    render: RendererDep,
    after: Annotated[
        UtcInstant | None, Query(description="Only offer sets created after this instant.")
    ] = None,
    last: Annotated[int | None, Query(ge=1, le=1000, description="At most this many.")] = None,
) -> Response:
    found = await broker.offers.list_offer_sets(caller=caller, after=after, last=last)
    return respond(
        {"offersets": [render.offer_set_summary(o) for o in found]}, fmt, root="offersets"
    )


@router.get(
    "/offersets/{uuid}",
    operation_id="OfferSetSelect",
    summary="An offer set and its offers, with their current phases",
    response_class=Response,
    responses={
        200: {"description": "The offer set.", "content": content_of("OfferSetResponse")},
        **error_responses(*CALLER_ERRORS, 404, 406),
    },
)
async def get_offer_set(
    uuid: UuidPath, fmt: OutputFormat, broker: BrokerDep, caller: CallerDep, render: RendererDep
) -> Response:
    record = await broker.offers.get_offer_set(parse_uuid(uuid, "offer set"), caller=caller)
    return respond(await built(render.offer_set, record), fmt, root="offers-response")
