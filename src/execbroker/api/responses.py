"""Reading bodies and writing answers in the format the client asked for.

Input format comes from ``Content-Type``, output format from ``Accept`` (JSON when absent
or ``*/*``). The output format is settled before a handler does anything, so that a 406
never follows a side effect.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from execbroker.api.formats import parse_body, render_body
from execbroker.api.formats.limits import ParseLimits
from execbroker.api.formats.negotiation import (
    MEDIA_TYPES,
    MediaFormat,
    format_for_accept,
    format_for_content_type,
)
from execbroker.api.writers import WRITERS
from execbroker.exceptions import BodyTooLargeError, MalformedBodyError
from execbroker.model.records import OfferSetRecord, SessionRecord

__all__ = [
    "OutputFormat",
    "answer",
    "built",
    "negotiate",
    "read_document",
    "rendered",
    "respond",
]

R = TypeVar("R", SessionRecord, OfferSetRecord)

# Records with more components than this are made into documents on a thread of their own:
# building one of thousands of volume mounts is a second of Python, which on the event loop
# stalls every client. One thread, so that several at once queue behind each other instead of
# contending for the GIL with the loop (four threads at once starved it for 0.5-0.8 s).
_INLINE_COMPONENTS = 500
_BUILDER = anyio.CapacityLimiter(1)


async def built(build: Callable[[R], dict[str, Any]], record: R) -> dict[str, Any]:
    """``build(record)`` (a :class:`~execbroker.api.render.Renderer` method), on the builder
    thread when the record has more than a few hundred components.
    """
    if isinstance(record, OfferSetRecord):
        components = sum(len(offer.components) for offer in record.offers)
    else:
        components = len(record.components)
    if components > _INLINE_COMPONENTS:
        return await anyio.to_thread.run_sync(build, record, limiter=_BUILDER)
    return build(record)


async def negotiate(request: Request) -> MediaFormat:
    """The response format, from ``Accept``; 406 when we offer none of what it lists.

    ``async`` so that FastAPI calls it on the event loop, not in a worker thread.
    """
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
    """``document`` in ``fmt``; a large one is written away from the event loop (see
    :mod:`execbroker.api.writers`), so that writing it (seconds, for an offer set of
    thousands of volumes as YAML) stalls no other client.
    """
    if _written_elsewhere(document, fmt):
        return _WrittenElsewhere(document, fmt, root=root, status_code=status_code, headers=headers)
    return Response(
        content=render_body(document, fmt, root=root),
        status_code=status_code,
        media_type=MEDIA_TYPES[fmt],
        headers=headers,
    )


async def rendered(document: Any, fmt: MediaFormat, *, root: str) -> bytes:
    """``document`` written in ``fmt``: here if small, else away from the event loop."""
    if _written_elsewhere(document, fmt):
        return await WRITERS.write(document, fmt, root=root)
    return render_body(document, fmt, root=root)


def answer(body: bytes, fmt: MediaFormat) -> Response:
    """A 200 whose body is already written in ``fmt``."""
    return Response(content=body, media_type=MEDIA_TYPES[fmt])


# Documents with more values than this are written off the event loop in YAML or XML.
# Counting stops at the limit, so the check costs little next to rendering; small answers
# skip the thread hop.
_INLINE_NODES = 2000


def _written_elsewhere(document: Any, fmt: MediaFormat) -> bool:
    """Whether writing ``document`` in ``fmt`` could stall the event loop. JSON never does:
    orjson writes a megabyte in about a millisecond, less than counting the document's
    values (7 % of the event loop's samples on ``POST /requests``: ``bench/README.md``).
    """
    return fmt is not MediaFormat.JSON and _larger_than(document, _INLINE_NODES)


def _larger_than(document: Any, limit: int) -> bool:
    pending = [document]
    seen = 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


class _WrittenElsewhere(Response):
    """A response whose body is written by :data:`WRITERS` when it is sent."""

    def __init__(
        self,
        document: Any,
        fmt: MediaFormat,
        *,
        root: str,
        status_code: int,
        headers: dict[str, str] | None,
    ) -> None:
        super().__init__(
            content=b"", status_code=status_code, media_type=MEDIA_TYPES[fmt], headers=headers
        )
        self._write = functools.partial(WRITERS.write, document, fmt, root=root)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.body = await self._write()
        length = str(len(self.body)).encode("latin-1")
        self.raw_headers = [
            (name, length if name == b"content-length" else value)
            for name, value in self.raw_headers
        ]
        await super().__call__(scope, receive, send)
