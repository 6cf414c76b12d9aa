"""``GET /sessions/{uuid}`` and ``POST /sessions/{uuid}`` (updates)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from execbroker.api.dependencies import BrokerDep, CallerDep, RendererDep
from execbroker.api.handlers.openapi_bodies import (
    CALLER_ERRORS,
    body_of,
    content_of,
    error_responses,
    schema_ref,
)
from execbroker.api.handlers.paths import UtcInstant, UuidPath, parse_uuid
from execbroker.api.responses import OutputFormat, answer, built, read_document, rendered, respond
from execbroker.api.waiting import HeldStream, credential_check, unless_disconnected
from execbroker.exceptions import UnauthorizedError
from execbroker.model.isotime import format_instant
from execbroker.model.phases import SessionPhase
from execbroker.model.records import SessionRecord
from execbroker.services.sessions import Listing

__all__ = ["router"]

router = APIRouter(tags=["sessions"])

# A listing entry is a session's kind, metadata, phase and schedule; its URL reads the rest.
_SESSION_LIST = {
    "type": "object",
    "required": ["sessions"],
    "properties": {"sessions": {"type": "array", "items": schema_ref("ExecutionSession")}},
}


@router.get(
    "/sessions/{uuid}",
    operation_id="SessionSelect",
    summary="A session: its phase, schedule, components, connectors and messages",
    response_class=Response,
    responses={
        200: {"description": "The session.", "content": content_of("ExecutionSession")},
        **error_responses(*CALLER_ERRORS, 404, 406, 429),
    },
)
async def get_session(
    uuid: UuidPath,
    request: Request,
    fmt: OutputFormat,
    broker: BrokerDep,
    caller: CallerDep,
    render: RendererDep,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            description="Block up to this many seconds until the phase changes "
            "(UWS semantics; capped by the server). Returns at once once ended.",
        ),
    ] = None,
    phase: Annotated[
        SessionPhase | None,
        Query(description="With wait: the phase to wait to leave (default: the current one)."),
    ] = None,
) -> Response:
    session_uuid = parse_uuid(uuid, "session")
    if wait:
        waited = await unless_disconnected(
            request,
            broker.sessions.wait_for_change(
                session_uuid,
                caller=caller,
                seconds=min(wait, broker.settings.server.max_wait.total_seconds()),
                phase=phase,
                still_allowed=credential_check(request, broker, caller),
                check_every=broker.settings.server.credential_recheck.total_seconds(),
            ),
        )
        if waited is None:  # the client went away; nobody reads this answer
            return Response(status_code=_CLIENT_GONE)
        return respond(await built(render.session, waited), fmt, root="execution")

    async def written(record: SessionRecord) -> bytes:
        return await rendered(await built(render.session, record), fmt, root="execution")

    body = await broker.sessions.session_document(
        session_uuid, caller=caller, variant=(render.base, render.viewer, fmt), render=written
    )
    return answer(body, fmt)


@router.get(
    "/sessions",
    operation_id="SessionList",
    summary="The caller's sessions, newest first",
    response_class=Response,
    responses={
        200: {"description": "The sessions.", "content": content_of(_SESSION_LIST)},
        **error_responses(*CALLER_ERRORS, 406),
    },
)
async def list_sessions(
    fmt: OutputFormat,
    broker: BrokerDep,
    caller: CallerDep,
    render: RendererDep,
    phase: Annotated[
        list[SessionPhase] | None, Query(description="Only sessions in these phases.")
    ] = None,
    after: Annotated[
        UtcInstant | None, Query(description="Only sessions created after this instant.")
    ] = None,
    last: Annotated[int | None, Query(ge=1, le=1000, description="At most this many.")] = None,
) -> Response:
    listing = Listing(phases=tuple(phase or ()), after=_aware(after), last=last)

    async def written(found: list[SessionRecord]) -> bytes:
        return await rendered(
            {"sessions": [render.session_summary(s) for s in found]}, fmt, root="sessions"
        )

    body = await broker.sessions.listing_document(
        listing, caller=caller, variant=(render.base, render.viewer, fmt), render=written
    )
    return answer(body, fmt)


@router.get(
    "/sessions/{uuid}/events",
    operation_id="SessionEvents",
    summary="Phase changes of the session and its components, as Server-Sent Events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **error_responses(*CALLER_ERRORS, 404, 429),
    },
)
async def session_events(
    uuid: UuidPath, request: Request, broker: BrokerDep, caller: CallerDep
) -> StreamingResponse:
    session_uuid = parse_uuid(uuid, "session")
    # 404 and 429 (too many streams of this caller) before streaming.
    slot, records = await broker.sessions.follow_session(
        session_uuid,
        caller=caller,
        still_allowed=credential_check(request, broker, caller),
        check_every=broker.settings.server.credential_recheck.total_seconds(),
        keepalive=_KEEPALIVE,
    )

    async def stream() -> AsyncIterator[str]:
        try:
            async for record in records:
                yield ": keep-alive\n\n" if record is None else _event(record)
        except UnauthorizedError as failure:
            # The token was revoked or expired while streaming: say so, then end.
            ended = {"error": failure.error, "message": failure.message}
            yield f"event: error\ndata: {json.dumps(ended)}\n\n"
        finally:
            await records.aclose()  # type: ignore[attr-defined]

    return HeldStream(
        stream(),
        slot=slot,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


_KEEPALIVE = 15.0
# nginx's code for "the client closed the connection before the answer": only logs see it.
_CLIENT_GONE = 499


def _event(record: SessionRecord) -> str:
    data = {
        "session": str(record.uuid),
        "phase": record.phase.value,
        "modified": format_instant(record.modified),
        "components": [
            {"uuid": str(c.uuid), "name": c.name, "role": c.role.value, "phase": c.phase.value}
            for c in record.components
        ],
    }
    return f"event: phase\ndata: {json.dumps(data)}\n\n"


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@router.post(
    "/sessions/{uuid}",
    operation_id="SessionUpdate",
    summary="Update a session: accept or reject an offer, cancel a session",
    response_class=Response,
    openapi_extra=body_of("AbstractUpdate"),
    responses={
        200: {"description": "The updated session.", "content": content_of("ExecutionSession")},
        **error_responses(*CALLER_ERRORS, 400, 404, 406, 409, 413, 415, 422, 429),
    },
)
async def update_session(
    uuid: UuidPath,
    request: Request,
    fmt: OutputFormat,
    broker: BrokerDep,
    caller: CallerDep,
    render: RendererDep,
) -> Response:
    session_uuid = parse_uuid(uuid, "session")
    document = await read_document(request, broker.limits)
    record = await broker.sessions.apply_update(session_uuid, document, caller=caller)
    return respond(await built(render.session, record), fmt, root="execution")
