"""``GET /sessions/{uuid}`` and ``POST /sessions/{uuid}`` (updates)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from execbroker.api.dependencies import BrokerDep, Owner, RendererDep
from execbroker.api.handlers.openapi_bodies import body_of, content_of, error_responses
from execbroker.api.handlers.paths import UuidPath, parse_uuid
from execbroker.api.responses import OutputFormat, read_document, respond

__all__ = ["router"]

router = APIRouter(tags=["sessions"])


@router.get(
    "/sessions/{uuid}",
    operation_id="SessionSelect",
    summary="A session: its phase, schedule, components, connectors and messages",
    response_class=Response,
    responses={
        200: {"description": "The session.", "content": content_of("ExecutionSession")},
        **error_responses(404, 406),
    },
)
async def get_session(
    uuid: UuidPath, fmt: OutputFormat, broker: BrokerDep, owner: Owner, render: RendererDep
) -> Response:
    record = await broker.sessions.get_session(parse_uuid(uuid, "session"), owner=owner)
    return respond(render.session(record), fmt, root="execution")


@router.post(
    "/sessions/{uuid}",
    operation_id="SessionUpdate",
    summary="Update a session: accept or reject an offer, cancel a session",
    response_class=Response,
    openapi_extra=body_of("AbstractUpdate"),
    responses={
        200: {"description": "The updated session.", "content": content_of("ExecutionSession")},
        **error_responses(400, 404, 406, 409, 413, 415, 422),
    },
)
async def update_session(
    uuid: UuidPath,
    request: Request,
    fmt: OutputFormat,
    broker: BrokerDep,
    owner: Owner,
    render: RendererDep,
) -> Response:
    session_uuid = parse_uuid(uuid, "session")
    document = await read_document(request, broker.limits)
    record = await broker.sessions.apply_update(session_uuid, document, owner=owner)
    return respond(render.session(record), fmt, root="execution")
