"""``GET /admin/calendar``: the pool's bookings over a range, held against used (admins only).

The dashboard's calendar page (``/ui/calendar``) draws it. What *held*, *used* and
*utilisation* mean is said in :mod:`execbroker.planning.occupancy`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from execbroker.api.dependencies import BrokerDep, CallerDep, RendererDep
from execbroker.api.handlers.openapi_bodies import CALLER_ERRORS, error_responses
from execbroker.api.handlers.paths import UtcInstant
from execbroker.api.responses import OutputFormat, respond
from execbroker.exceptions import ServiceUnavailableError
from execbroker.model.capacity import Amounts
from execbroker.model.isotime import format_instant
from execbroker.model.messages import warn
from execbroker.model.wire import dump
from execbroker.planning.occupancy import BookedSpans, Occupancy, Span
from execbroker.services.occupancy import MAX_BOOKINGS

__all__ = ["router"]

router = APIRouter(tags=["operations"])

_AMOUNTS = {
    "type": "object",
    "properties": {
        "cores": {"type": "integer"},
        "memory_gib": {"type": "integer"},
        "storage_gib": {"type": "integer"},
    },
}
_SPAN = {
    "type": "object",
    "properties": {
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
    },
}
_CALENDAR = {
    "type": "object",
    "properties": {
        "from": {"type": "string", "format": "date-time"},
        "to": {"type": "string", "format": "date-time"},
        "now": {"type": "string", "format": "date-time"},
        "capacity": _AMOUNTS,
        "utilisation": {
            "type": "object",
            "description": "Core-seconds held (used) in the range over the pool's.",
            "properties": {"held": {"type": "number"}, "used": {"type": "number"}},
        },
        "core_hours": {
            "type": "object",
            "properties": {
                "pool": {"type": "number"},
                "held": {"type": "number"},
                "used": {"type": "number"},
            },
        },
        "series": {
            "type": "array",
            "description": "Steps: from `at` until the next step (or `to`), this is held and used.",
            "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "string", "format": "date-time"},
                    "held": _AMOUNTS,
                    "used": _AMOUNTS,
                },
            },
        },
        "bookings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "session": {"type": "string", "format": "uuid"},
                    "url": {"type": "string"},
                    "owner": {"type": "string"},
                    "phase": {"type": "string"},
                    "offer_set": {"type": "string", "format": "uuid"},
                    "book_start": {"type": "string", "format": "date-time"},
                    "book_end": {"type": "string", "format": "date-time"},
                    "cores": {"type": "integer"},
                    "memory_gib": {"type": "integer"},
                    "storage_gib": {"type": "integer"},
                    "interactive": {"type": "boolean"},
                    "held": _SPAN,
                    "used": _SPAN,
                },
            },
        },
        "truncated": {"type": "boolean"},
        "messages": {"type": "array", "items": {"type": "object"}},
    },
}


@router.get(
    "/admin/calendar",
    summary="The pool's bookings over a range, held against used (administrators only)",
    response_class=Response,
    responses={
        200: {
            "description": "The bookings, the held and used series, and the utilisation.",
            "content": {"application/json": {"schema": _CALENDAR}},
        },
        403: {"description": "The caller is not an administrator."},
        422: {"description": "The range ends before it starts, or is longer than 7 days."},
        **error_responses(*CALLER_ERRORS, 406),
    },
)
async def pool_calendar(
    fmt: OutputFormat,
    broker: BrokerDep,
    caller: CallerDep,
    render: RendererDep,
    start: Annotated[
        UtcInstant | None,
        Query(alias="from", description="The range's start (default: now, or `to` minus 24 h)."),
    ] = None,
    end: Annotated[
        UtcInstant | None,
        Query(alias="to", description="The range's end (default: `from` + 24 h; at most 7 days)."),
    ] = None,
) -> Response:
    if broker.occupancy is None:
        raise ServiceUnavailableError("The pool's calendar is not served by this broker")
    found = await broker.occupancy.pool_calendar(caller=caller, start=start, end=end)
    document = _document(found, lambda uuid: render.url("sessions", uuid))
    return respond(document, fmt, root="calendar")


def _amounts(amounts: Amounts) -> dict[str, int]:
    return {
        "cores": amounts.cores,
        "memory_gib": amounts.memory_gib,
        "storage_gib": amounts.storage_gib,
    }


def _span(span: Span | None) -> dict[str, str] | None:
    if span is None:
        return None
    return {"start": format_instant(span.start), "end": format_instant(span.end)}


def _booking(spans: BookedSpans, url: str) -> dict[str, Any]:
    booking = spans.booking
    document: dict[str, Any] = {
        "session": str(booking.uuid),
        "url": url,
        "owner": booking.owner,
        "phase": booking.phase.value,
        "offer_set": str(booking.offer_set_uuid) if booking.offer_set_uuid else None,
        "book_start": format_instant(booking.start),
        "book_end": format_instant(booking.end),
        **_amounts(booking.amounts),
        "interactive": booking.amounts.interactive > 0,
        "held": _span(spans.held),
        "used": _span(spans.used),
    }
    return {name: value for name, value in document.items() if value is not None}


def _document(found: Occupancy, url: Any) -> dict[str, Any]:
    hours = 3600.0
    document: dict[str, Any] = {
        "from": format_instant(found.start),
        "to": format_instant(found.end),
        "now": format_instant(found.now),
        "capacity": _amounts(found.capacity),
        "utilisation": {"held": found.held_utilisation, "used": found.used_utilisation},
        "core_hours": {
            "pool": found.pool_core_seconds / hours,
            "held": found.held_core_seconds / hours,
            "used": found.used_core_seconds / hours,
        },
        "series": [
            {"at": format_instant(s.at), "held": _amounts(s.held), "used": _amounts(s.used)}
            for s in found.steps
        ],
        "bookings": [_booking(b, url(b.booking.uuid)) for b in found.bookings],
        "truncated": found.truncated,
    }
    if found.truncated:
        note = warn(
            "More than {most} bookings overlap the range: these are the first {most} by "
            "start, and the series and utilisation count only them; ask for a shorter range",
            most=MAX_BOOKINGS,
            time=found.now,
        )
        document["messages"] = [dump(note)]
    return document
