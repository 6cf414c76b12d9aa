"""One place that turns every failure into a 4xx/5xx body with messages saying why.

Client errors and HTTP errors are answered by exception handlers. An exception nothing
handles is answered by :class:`UnhandledErrors`, a middleware inside the security headers:
Starlette's own last resort answers outside every middleware (so without those headers) and
re-raises, so that uvicorn logs a second traceback and closes the connection.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from execbroker.api.formats.negotiation import MediaFormat, format_for_accept
from execbroker.api.responses import respond
from execbroker.exceptions import ClientError, RequestRefusedError
from execbroker.model import kinds
from execbroker.model.messages import error as error_message
from execbroker.model.messages import make_message
from execbroker.model.phases import MessageLevel, SessionPhase
from execbroker.model.wire import MessageItem, dump

__all__ = [
    "UnhandledErrors",
    "answer_not_found",
    "client_error_response",
    "install_error_handlers",
    "install_refusal_handler",
]

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
}


def _format(request: Request) -> MediaFormat:
    try:
        return format_for_accept(request.headers.get("accept"))
    except ClientError:
        return MediaFormat.JSON  # the client accepts nothing we write; JSON still explains


def _error_response(
    request: Request,
    *,
    status: int,
    code: str,
    messages: list[MessageItem],
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "error": code,
        "status": status,
        "messages": [dump(m) for m in messages],
    }
    return respond(body, _format(request), root="error", status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every refusal the same way: a status, an ``error`` code and ``messages``.

    Client errors keep their own status and message template; a request FastAPI cannot
    validate becomes a 422 naming each field; Starlette's own errors (an unknown path, a
    method not allowed) get the same shape; a refused direct request is answered as the
    schema's failed session, with the messages saying why.
    """

    @app.exception_handler(ClientError)
    async def _client_error(request: Request, failure: ClientError) -> Response:
        return client_error_response(request, failure)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, failure: RequestValidationError) -> Response:
        messages = [
            error_message(
                "{path}: {reason}",
                path="/" + "/".join(str(p) for p in item.get("loc", ())),
                reason=item.get("msg", "invalid"),
            )
            for item in failure.errors()
        ]
        return _error_response(request, status=422, code="unprocessable", messages=messages)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, failure: StarletteHTTPException) -> Response:
        return _http_error_response(request, failure)


def client_error_response(request: Request, failure: ClientError) -> Response:
    """The answer to a refusal: its status, its ``error`` code, and messages saying why."""
    values = dict(failure.values)
    if failure.path:
        values["path"] = failure.path
    first = make_message(MessageLevel.ERROR, failure.template, values)
    return _error_response(
        request,
        status=failure.status,
        code=failure.error,
        messages=[first, *failure.details],
        headers=failure.headers or None,
    )


def _http_error_response(request: Request, failure: StarletteHTTPException) -> Response:
    status = failure.status_code
    detail = failure.detail if isinstance(failure.detail, str) else "HTTP error"
    if status == 404:
        detail = "Nothing is served at {path}"
    elif status == 405:
        detail = "{method} is not allowed on {path}"
    return _error_response(
        request,
        status=status,
        code=_HTTP_CODES.get(status, "http_error"),
        messages=[error_message(detail, path=request.url.path, method=request.method)],
        headers=dict(failure.headers) if failure.headers else None,
    )


def answer_not_found(otherwise: ASGIApp) -> ASGIApp:
    """The router's last resort for a path no route serves: the 404 the HTTP error handler
    would give, answered at once instead of raised and caught (``otherwise`` answers
    anything but HTTP).
    """

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await otherwise(scope, receive, send)
            return
        response = _http_error_response(Request(scope), StarletteHTTPException(404))
        await response(scope, receive, send)

    return not_found


class UnhandledErrors:
    """Answers an exception no handler took with a 500 error body, and logs it once.

    Pure ASGI middleware, added inside :class:`~execbroker.api.security.SecurityHeaders`,
    so the 500 carries the same headers as every other answer, and the connection stays
    open for the client's next request. The traceback goes to the log (through the
    redacting filter), never to the client. When the answer had already started (a
    stream), nothing more can be said: the failure is logged and the answer ends.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except ClientDisconnect:
            # The client closed its connection before its body was all sent: nobody is left
            # to answer, and nothing failed in the broker (one line, no traceback: a client
            # that does this on purpose must not fill the log).
            logger.info(
                "the client went away before sending its whole request",
                extra={"path": scope.get("path", ""), "method": scope.get("method", "")},
            )
        except Exception as failure:
            request = Request(scope)
            logger.exception(
                "unhandled error",
                extra={
                    "path": request.url.path,
                    "method": request.method,
                    "answered": not started,
                },
            )
            if started:
                return
            response = _error_response(
                request,
                status=500,
                code="internal_error",
                messages=[
                    error_message(
                        "The broker failed to handle this request ({error_type}); it has been "
                        "logged",
                        error_type=type(failure).__name__,
                    )
                ],
            )
            await response(scope, receive, send)


def install_refusal_handler(app: FastAPI) -> None:
    """A direct request the broker cannot serve: 400 with one message per problem."""

    @app.exception_handler(RequestRefusedError)
    async def _refused(request: Request, failure: RequestRefusedError) -> Response:
        # The schema answers a refused direct request with a session (its
        # "FailedExecutionResponse"): kind, phase and the messages in meta, which generated
        # clients read. The error document's own fields stay beside them.
        messages = [dump(m) for m in failure.messages]
        body: dict[str, Any] = {
            "kind": kinds.SESSION_SCHEDULED,
            "meta": {"messages": messages},
            "phase": SessionPhase.FAILED.value,
            "error": "request_refused",
            "status": 400,
            "messages": messages,
        }
        return respond(body, _format(request), root="error", status_code=400)
