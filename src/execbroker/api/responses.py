"""Reading bodies and writing answers in the format the client asked for.

Input format comes from ``Content-Type``, output format from ``Accept`` (JSON when absent
or ``*/*``). The output format is settled before a handler does anything, so that a 406
never follows a side effect.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from execbroker.api.formats import (
    MEDIA_TYPES,
    MediaFormat,
    ParseLimits,
    format_for_accept,
    format_for_content_type,
    parse_body,
    render_body,
)
from execbroker.exceptions import BodyTooLargeError, MalformedBodyError

__all__ = ["OutputFormat", "negotiate", "read_document", "respond"]


def negotiate(request: Request) -> MediaFormat:
    """The response format, from ``Accept``; 406 when we offer none of what it lists."""
    return format_for_accept(request.headers.get("accept"))


OutputFormat = Annotated[MediaFormat, Depends(negotiate)]


async def read_document(request: Request, limits: ParseLimits) -> Any:
    """The body as a document; 413 past the size limit, 415 for an unknown type, 400 if bad."""
    fmt = format_for_content_type(request.headers.get("content-type"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise BodyTooLargeError(
            "The body is {size} bytes; the limit is {limit}",
            {"size": declared, "limit": limits.max_bytes},
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_bytes:
            raise BodyTooLargeError(
                "The body is larger than the limit of {limit} bytes", {"limit": limits.max_bytes}
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise MalformedBodyError("The body is empty; send a {format} document", {"format": fmt})
    return parse_body(raw, fmt, limits)


def respond(
    document: Any,
    fmt: MediaFormat,
    *,
    root: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        content=render_body(document, fmt, root=root),
        status_code=status_code,
        media_type=MEDIA_TYPES[fmt],
        headers=headers,
    )
