"""Requests whose headers are too large or too many are answered 431 before anything runs.

uvicorn with httptools reads headers of any size (8 MB were accepted), and everything after
it -- format negotiation, authentication, error answers -- reads them again. This pure ASGI
middleware sits outside every other part of the app except the security headers: it counts
the request's header lines and their bytes (names and values) and answers
``431 Request Header Fields Too Large`` with a JSON error naming the limit, without reading
the body or calling the app. The answer is JSON whatever ``Accept`` says: the headers are
exactly what is not to be trusted here.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from execbroker.model.messages import make_message
from execbroker.model.phases import MessageLevel
from execbroker.model.wire import dump

__all__ = ["HeaderLimits"]

_STATUS = 431


class HeaderLimits:
    """Refuse requests with more than ``max_count`` header lines or ``max_bytes`` of them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_count: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_count = max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        size = sum(len(name) + len(value) for name, value in headers)
        if len(headers) > self.max_count:
            template = "The request has {count} header lines; the limit is {limit}"
            values: dict[str, object] = {"count": len(headers), "limit": self.max_count}
        elif size > self.max_bytes:
            template = "The request's headers hold {size} bytes; the limit is {limit} bytes"
            values = {"size": size, "limit": self.max_bytes}
        else:
            await self.app(scope, receive, send)
            return
        message = make_message(MessageLevel.ERROR, template, values)
        body = json.dumps(
            {"error": "headers_too_large", "status": _STATUS, "messages": [dump(message)]}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": _STATUS,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The client may not know which header was too much: start afresh.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
