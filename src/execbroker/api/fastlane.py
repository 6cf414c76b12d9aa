"""The reads clients repeat most, answered without the framework's routing.

``GET /healthz`` is answered here at once, as its route would answer it.

A client polling its session, and a dashboard polling many, send ``GET /sessions/{uuid}``
and ``GET /sessions?last=N`` again and again, and most answers are what the broker rendered
last time (:meth:`~execbroker.services.sessions.SessionService.cached_document` and
``cached_listing``). Routing such a request through FastAPI (the route table, the
dependency solver, the exception middleware) cost several times what answering it does.
:class:`SessionReads`, a pure ASGI middleware inside every other, answers it here when it
can, in the same order of checks as the route: the ``Accept`` header, then the bearer token
(a refusal is the route's own 401 or 503), then the cached document. Anything else (a
long-poll, another query, an unknown or unreadable session, a document not rendered yet)
goes on to the route, which also renders what is answered here next time.
"""

from __future__ import annotations

import re
from uuid import UUID

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from execbroker.api.dependencies import Broker, caller_for, no_bearer_token
from execbroker.api.errors import client_error_response
from execbroker.api.formats.negotiation import format_for_accept
from execbroker.api.handlers.health import health_answer
from execbroker.api.responses import answer
from execbroker.api.urls import base_url
from execbroker.exceptions import ClientError
from execbroker.services.sessions import Listing

__all__ = ["SessionReads"]

_SESSION_PATH = re.compile(r"/sessions/([0-9a-fA-F-]{36})")
_LAST = re.compile(rb"last=([0-9]{1,4})")
_MOST_LISTED = 1000  # the route's own limit on ``last``


class SessionReads:
    """Pure ASGI middleware, innermost: ``GET /healthz``, and a repeated
    ``GET /sessions/{uuid}`` or ``GET /sessions[?last=N]`` answered from what was rendered
    last (see the module's description); every other request goes on to ``app``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/healthz":  # a load balancer's probe, many a second
            await (await health_answer(scope["app"].state.broker))(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        uuid: UUID | None = None
        listing: Listing | None = None
        try:
            if path == "/sessions":
                listing = _listing(query)
            elif not query and (matched := _SESSION_PATH.fullmatch(path)) is not None:
                uuid = UUID(matched[1])
        except ValueError:
            pass  # the route explains (404, 422)
        if uuid is None and listing is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            fmt = format_for_accept(request.headers.get("accept"))
        except ClientError:
            await self.app(scope, receive, send)  # the route explains (406)
            return
        broker: Broker = scope["app"].state.broker
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise no_bearer_token()
            caller = await caller_for(broker, token)
        except ClientError as refused:
            await client_error_response(request, refused)(scope, receive, send)
            return
        variant = (base_url(request, broker.settings), caller.name, fmt)
        if listing is not None:
            body = await broker.sessions.cached_listing(listing, caller=caller, variant=variant)
        elif uuid is not None:
            body = await broker.sessions.cached_document(uuid, caller=caller, variant=variant)
        if body is None:
            await self.app(scope, receive, send)
            return
        await answer(body, fmt)(scope, receive, send)


def _listing(query: bytes) -> Listing | None:
    """The listing a query string selects, if it is one answered here: none, or ``last``."""
    if not query:
        return Listing()
    matched = _LAST.fullmatch(query)
    if matched is None:
        return None
    last = int(matched[1])
    return Listing(last=last) if 1 <= last <= _MOST_LISTED else None
