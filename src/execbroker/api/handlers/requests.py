"""``POST /requests`` (offers) and ``POST /direct`` (run now), with their older aliases."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from execbroker.api.dependencies import BrokerDep, CallerDep, RendererDep
from execbroker.api.handlers.openapi_bodies import (
    CALLER_ERRORS,
    body_of,
    content_of,
    error_responses,
)
from execbroker.api.responses import OutputFormat, built, read_document, respond

__all__ = ["router"]

router = APIRouter(tags=["requests"])


async def create_offer_set(
    request: Request, fmt: OutputFormat, broker: BrokerDep, caller: CallerDep, render: RendererDep
) -> Response:
    document = await read_document(request, broker.limits)
    offer_set = await broker.offers.request_offers(document, caller=caller)
    body = await built(render.offer_set, offer_set)
    return respond(
        body,
        fmt,
        root="offers-response",
        status_code=303,
        headers={"Location": body["meta"]["url"]},
    )


async def create_direct_session(
    request: Request, fmt: OutputFormat, broker: BrokerDep, caller: CallerDep, render: RendererDep
) -> Response:
    document = await read_document(request, broker.limits)
    # The session as any reader sees it: its extension limit was worked out while booking.
    created = await broker.offers.execute_directly(document, caller=caller)
    body = await built(render.session, created)
    return respond(
        body,
        fmt,
        root="execution",
        status_code=303,
        headers={"Location": body["meta"]["url"]},
    )


_OFFERS_RESPONSES = {
    303: {
        "description": "The offer set: Location names it, and the body holds it "
        "(result YES with offers, or NO with messages saying why).",
        "headers": {"Location": {"required": True, "schema": {"type": "string", "format": "uri"}}},
        "content": content_of("OfferSetResponse"),
    },
    **error_responses(*CALLER_ERRORS, 400, 406, 413, 415, 429),
}
_DIRECT_RESPONSES = {
    303: {
        "description": "The new session, ACCEPTED and starting as soon as it can.",
        "headers": {"Location": {"required": True, "schema": {"type": "string", "format": "uri"}}},
        "content": content_of("ExecutionSession"),
    },
    **error_responses(*CALLER_ERRORS, 400, 406, 413, 415, 429),
}

# The v1.0 paths, and the older (deprecated) paths the reference broker's clients still use.
_ROUTES = (
    ("/requests", "ExecutionRequest", "Ask for offers for an execution", False),
    (
        "/offersets",
        "ExecutionRequestLegacy",
        "Ask for offers (older path, same as POST /requests)",
        True,
    ),
    ("/direct", "DirectExecution", "Run an execution at once, without offers", False),
    (
        "/sessions",
        "DirectExecutionLegacy",
        "Run an execution at once (older path, same as POST /direct)",
        True,
    ),
)
for path, operation_id, summary, deprecated in _ROUTES:
    offers = operation_id.startswith("ExecutionRequest")
    router.add_api_route(
        path,
        create_offer_set if offers else create_direct_session,
        methods=["POST"],
        operation_id=operation_id,
        summary=summary,
        status_code=303,
        responses=_OFFERS_RESPONSES if offers else _DIRECT_RESPONSES,
        openapi_extra=body_of("ExecutionRequest"),
        response_class=Response,
        deprecated=deprecated,
    )
