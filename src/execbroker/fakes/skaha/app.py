"""The fake's HTTP face: Skaha's URL space over a ``FakeSkaha``, plus a small admin API.

Each request is authenticated, counted, exposed to injected faults and then answered by one
``FakeSkaha`` method; errors become ``text/plain`` bodies the way cadc-rest writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from execbroker.fakes.skaha.config import Endpoint, Fault, FaultKind
from execbroker.fakes.skaha.errors import (
    AccessControlError,
    IllegalArgumentError,
    NotAuthenticatedError,
    SkahaError,
    TransientError,
    UnexpectedError,
)
from execbroker.fakes.skaha.state import NOT_AUTHORIZED, FakeSkaha

__all__ = ["create_skaha_app"]

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_RAW_RECEIVE = "execbroker.fake.raw_receive"
_VOSI_AVAILABILITY = "http://www.ivoa.net/xml/VOSIAvailability/v1.0"
_CAPABILITIES = ("session-1", "context-1", "image-1", "repository-1")
_LEGACY_SESSIONS = "vos://cadc.nrc.ca~vospace/CADC/std/Proc#sessions-1.0"


def create_skaha_app(
    fake: FakeSkaha, *, mounts: Mapping[str, ASGIApp] | None = None, admin: bool = True
) -> ASGIApp:
    """The ASGI app serving ``fake`` under ``/skaha``, connect URLs under ``/session``,
    the admin API under ``/fake`` (unless ``admin=False``) and each of ``mounts`` at its
    prefix (e.g. ``{"/oidc": provider_app}``).
    """
    skaha = _SkahaRoutes(fake)
    routes: list[BaseRoute] = [
        Mount(
            "/skaha",
            routes=[
                Route("/availability", skaha.availability, methods=["GET"]),
                Route("/capabilities", skaha.capabilities, methods=["GET"]),
                Route("/v1/session", skaha.sessions, methods=_ALL_METHODS),
                Route("/v1/session/{session_id}", skaha.session, methods=_ALL_METHODS),
                Route("/v1/image", skaha.image, methods=_ALL_METHODS),
                Route("/v1/context", skaha.context, methods=_ALL_METHODS),
                Route("/v1/repository", skaha.repository, methods=_ALL_METHODS),
            ],
        ),
        Route("/session/{kind}/{session_id}/{rest:path}", skaha.connect, methods=["GET"]),
    ]
    if admin:
        routes.append(Mount("/fake", routes=_admin_routes(fake)))
    routes += [Mount(prefix, app=app) for prefix, app in (mounts or {}).items()]
    return _KeepRawReceive(Starlette(routes=routes))


@dataclass(frozen=True)
class _Params:
    """Servlet-style parameters: query string and form body merged, repeats kept."""

    items: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return next((value for name, value in self.items if name == key), None)

    def all(self, key: str) -> list[str]:
        return [value for name, value in self.items if name == key]


async def _params(request: Request) -> _Params:
    items = list(request.query_params.multi_items())
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        body = (await request.body()).decode("utf-8", errors="replace")
        items += parse_qsl(body, keep_blank_values=True)
    elif content_type.startswith("multipart/form-data"):
        form = await request.form()
        items += [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
    return _Params(tuple(items))


Action = Callable[[str, _Params, Request], Response]


class _SkahaRoutes:
    """Handlers for Skaha's endpoints; each names its ``Endpoint`` and one fake call."""

    def __init__(self, fake: FakeSkaha) -> None:
        self.fake = fake

    async def sessions(self, request: Request) -> Response:
        params = await _params(request)
        if request.method == "GET":
            if params.get("view") == "stats":
                return await self._answer(request, params, Endpoint.SESSION_STATS, self._stats)
            if params.get("view") == "interactive":
                return await self._answer(request, params, Endpoint.LIST_INTERACTIVE, self._list)
            return await self._answer(request, params, Endpoint.LIST_SESSIONS, self._list)
        if request.method == "POST":
            return await self._answer(request, params, Endpoint.CREATE_SESSION, self._create)
        return _unsupported(request)

    async def session(self, request: Request) -> Response:
        params = await _params(request)
        if request.method == "GET":
            view = params.get("view")
            if view == "logs":
                return await self._answer(request, params, Endpoint.SESSION_LOGS, self._logs)
            if view == "events":
                return await self._answer(request, params, Endpoint.SESSION_EVENTS, self._events)
            return await self._answer(request, params, Endpoint.GET_SESSION, self._get)
        if request.method == "POST":
            return await self._answer(request, params, Endpoint.MODIFY_SESSION, self._modify)
        if request.method == "DELETE":
            return await self._answer(request, params, Endpoint.DELETE_SESSION, self._delete)
        return _unsupported(request)

    async def image(self, request: Request) -> Response:
        if request.method != "GET":
            return _unsupported(request)
        params = await _params(request)
        return await self._answer(
            request,
            params,
            Endpoint.IMAGES,
            lambda _u, p, _r: _json(self.fake.images(p.get("type"))),
        )

    async def context(self, request: Request) -> Response:
        if request.method != "GET":
            return _unsupported(request)
        params = await _params(request)
        return await self._answer(
            request, params, Endpoint.CONTEXT, lambda _u, _p, _r: _json(self.fake.context())
        )

    async def repository(self, request: Request) -> Response:
        if request.method != "GET":
            return _unsupported(request)
        params = await _params(request)
        hosts = list(self.fake.catalogue.registry_hosts)
        return await self._answer(
            request, params, Endpoint.REPOSITORY, lambda _u, _p, _r: _json(hosts)
        )

    async def availability(self, request: Request) -> Response:
        params = await _params(request)
        return await self._answer(
            request, params, Endpoint.AVAILABILITY, self._availability, authenticate=False
        )

    async def capabilities(self, request: Request) -> Response:
        params = await _params(request)
        return await self._answer(
            request, params, Endpoint.CAPABILITIES, self._capabilities, authenticate=False
        )

    async def connect(self, request: Request) -> Response:
        params = await _params(request)
        return await self._answer(
            request, params, Endpoint.CONNECT, self._connect, authenticate=False
        )

    # ---- the pipeline ----------------------------------------------------------------------

    async def _answer(
        self,
        request: Request,
        params: _Params,
        endpoint: Endpoint,
        action: Action,
        *,
        authenticate: bool = True,
    ) -> Response:
        """Authenticate, count, apply faults, then run ``action`` for the user."""
        user: str | None = None
        failure: SkahaError | None = None
        if authenticate:
            try:
                user = self._authenticate(request)
            except NotAuthenticatedError as error:
                failure = error
        self.fake.record(endpoint, user, request.method, request.url.path)
        faults = self.fake.take_faults(endpoint, user)
        try:
            for fault in faults:
                if fault.kind is FaultKind.DELAY:
                    await asyncio.sleep(fault.delay)
                elif fault.after:
                    continue
                elif fault.kind is FaultKind.RESET:
                    return _DropConnection()
                else:
                    raise _fault_error(fault, request)
            if failure is not None:
                raise failure
            if user is not None:
                self.fake.authorize(user)
            response = action(user or "", params, request)
            for fault in faults:
                if fault.after and fault.kind is FaultKind.RESET:
                    return _DropConnection()
                if fault.after and fault.kind is not FaultKind.DELAY:
                    raise _fault_error(fault, request)
        except SkahaError as error:
            return _error_response(error)
        if user is not None and response.status_code < 300:
            response.headers["x-vo-authenticated"] = user
        return response

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("authorization")
        if header is None:
            raise self._unauthenticated("no bearer token in the request")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._unauthenticated("malformed Authorization header", error="invalid_request")
        user = self.fake.authority.user_for(token.strip())
        if user is None:
            raise self._unauthenticated("invalid or expired token")
        return user

    def _unauthenticated(
        self, message: str, *, error: str = "invalid_token"
    ) -> NotAuthenticatedError:
        challenges: tuple[str, ...] = ()
        if self.fake.issuer_url:
            challenges = (
                f'ivoa_bearer standard_id="ivo://ivoa.net/sso#OpenID", '
                f'access_url="{self.fake.issuer_url}"',
            )
        return NotAuthenticatedError(message, error=error, challenges=challenges)

    # ---- actions -------------------------------------------------------------------------

    def _list(self, user: str, params: _Params, request: Request) -> Response:
        return _json(
            self.fake.list_sessions(
                user,
                session_type=params.get("type"),
                status=params.get("status"),
                view=params.get("view"),
                base=_base(request),
            )
        )

    def _stats(self, _user: str, _params: _Params, request: Request) -> Response:
        if self.fake.quirks.metrics_missing:
            raise TransientError(request.url.path)
        return _json(self.fake.session_stats())

    def _create(self, user: str, params: _Params, request: Request) -> Response:
        session_id = self.fake.create_session(
            user,
            name=params.get("name"),
            image=params.get("image"),
            session_type=params.get("type"),
            cores=params.get("cores"),
            ram=params.get("ram"),
            gpus=params.get("gpus"),
            cmd=params.get("cmd"),
            args=params.get("args"),
            env=params.all("env"),
            registry_auth=request.headers.get("x-skaha-registry-auth"),
        )
        return _text(f"{session_id}\n")

    def _get(self, user: str, _params: _Params, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        return _json(self.fake.get_session(user, session_id, base=_base(request)))

    def _logs(self, user: str, _params: _Params, request: Request) -> Response:
        return _text(self.fake.session_logs(user, request.path_params["session_id"]))

    def _events(self, user: str, _params: _Params, request: Request) -> Response:
        return _text(self.fake.session_events(user, request.path_params["session_id"]))

    def _modify(self, user: str, params: _Params, request: Request) -> Response:
        self.fake.modify_session(user, request.path_params["session_id"], params.get("action"))
        return Response(b"", status_code=200)

    def _delete(self, user: str, _params: _Params, request: Request) -> Response:
        self.fake.delete_session(user, request.path_params["session_id"])
        return Response(b"", status_code=200)

    def _availability(self, _user: str, _params: _Params, _request: Request) -> Response:
        available = "true" if self.fake.quirks.available else "false"
        note = "service is accepting requests" if available == "true" else "service is down"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<vosi:availability xmlns:vosi="{_VOSI_AVAILABILITY}">\n'
            f"  <vosi:available>{available}</vosi:available>\n"
            f"  <vosi:note>{note}</vosi:note>\n"
            "</vosi:availability>\n"
        )
        return Response(body, media_type="text/xml")

    def _capabilities(self, _user: str, _params: _Params, request: Request) -> Response:
        quirks = self.fake.quirks
        if quirks.no_capabilities:
            return _text("not found: /skaha/capabilities", status_code=404)
        root = f"{_base(request)}/skaha"
        offered = (
            [(_LEGACY_SESSIONS, f"{root}/v0")]
            if quirks.v0_only
            else [
                (f"http://www.opencadc.org/std/platform#{name}", f"{root}/v1")
                for name in _CAPABILITIES
            ]
        )
        entries = "".join(
            f'  <capability standardID="{standard}">\n'
            f'    <interface xsi:type="vs:ParamHTTP" role="std">\n'
            f'      <accessURL use="base">{url}</accessURL>\n'
            '      <securityMethod standardID="ivo://ivoa.net/sso#token"/>\n'
            "    </interface>\n"
            "  </capability>\n"
            for standard, url in offered
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"'
            ' xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"'
            ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
            f"{entries}</vosi:capabilities>\n"
        )
        return Response(body, media_type="text/xml")

    def _connect(self, _user: str, _params: _Params, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        status = self.fake.connect_status(session_id)
        if status == 503:
            return _text("service unavailable: the session is starting", status_code=503)
        if status != 200:
            return _text("session not available", status_code=404)
        kind = request.path_params["kind"]
        return Response(
            f"<html><body>fake {kind} session {session_id}</body></html>\n", media_type="text/html"
        )


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _json(document: Any) -> Response:
    """Gson's pretty printing: two-space indent."""
    return Response(json.dumps(document, indent=2), media_type="application/json")


def _text(body: str, *, status_code: int = 200) -> Response:
    return Response(body, status_code=status_code, media_type="text/plain")


def _unsupported(request: Request) -> Response:
    return _text(f"unsupported: HTTP {request.method}", status_code=400)


def _error_response(error: SkahaError) -> Response:
    response = _text(error.body(), status_code=error.status)
    response.headers.update(error.headers())
    if isinstance(error, NotAuthenticatedError):
        for challenge in error.challenge_values():
            response.headers.append("WWW-Authenticate", challenge)
    return response


def _fault_error(fault: Fault, request: Request) -> SkahaError:
    match fault.kind:
        case FaultKind.ERROR:
            return UnexpectedError(fault.message or "java.lang.NullPointerException")
        case FaultKind.UNAVAILABLE:
            return TransientError(request.url.path, retry_after=fault.retry_after)
        case FaultKind.UNAUTHORIZED:
            return NotAuthenticatedError(fault.message or "invalid or expired token")
        case FaultKind.FORBIDDEN:
            return AccessControlError(fault.message or NOT_AUTHORIZED)
        case FaultKind.BAD_REQUEST:
            return IllegalArgumentError(fault.message or "bad request")
        case _:
            raise AssertionError(f"not an error fault: {fault.kind}")


class _DropConnection(Response):
    """Not a response: abort the TCP connection with a reset, sending nothing at all.

    Raising inside the app would make uvicorn send a 500 instead, so this reaches the
    connection's transport through uvicorn's ``receive`` (a method of its request cycle),
    sets ``SO_LINGER`` to zero so that closing sends RST, and aborts it.
    """

    def __init__(self) -> None:
        super().__init__(b"", status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get(_RAW_RECEIVE, receive)
        transport = getattr(getattr(raw, "__self__", None), "transport", None)
        abort = getattr(transport, "abort", None)
        if transport is None or abort is None:
            # Not uvicorn: start a response and break it off, which servers close on.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise ConnectionAbortedError("fake connection reset")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Without it the peer sees a FIN instead of a RST: still no response.
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        abort()
        for _ in range(3):  # let uvicorn see connection_lost, so it sends nothing more
            await asyncio.sleep(0)


class _KeepRawReceive:
    """Puts the server's own ``receive`` into the scope, for ``_DropConnection``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, _RAW_RECEIVE: receive}
        await self.app(scope, receive, send)


# ---- admin API ---------------------------------------------------------------------------


def _admin_routes(fake: FakeSkaha) -> list[BaseRoute]:
    """``/fake/...``: drive the knobs from outside the process (no authentication)."""

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            fake.clear_faults()
            return Response(status_code=204)
        spec = await request.json()
        endpoint = spec.get("endpoint")
        fake.inject(
            Fault(
                kind=FaultKind(spec["kind"]),
                endpoint=None if endpoint is None else Endpoint(endpoint),
                user=spec.get("user"),
                times=spec.get("times", 1),
                probability=float(spec.get("probability", 1.0)),
                delay=float(spec.get("delay", 0.0)),
                retry_after=int(spec.get("retry_after", 5)),
                message=spec.get("message"),
                after=bool(spec.get("after", False)),
            )
        )
        return Response(status_code=204)

    async def quirks(request: Request) -> Response:
        changes = {str(key): bool(value) for key, value in (await request.json()).items()}
        return _json(vars(fake.set_quirks(**changes)))

    async def requests(_request: Request) -> Response:
        counts = fake.request_counts()
        return _json(
            [
                {"endpoint": str(endpoint), "user": user, "count": count}
                for (endpoint, user), count in sorted(counts.items(), key=str)
            ]
        )

    async def queue(request: Request) -> Response:
        spec = await request.json()
        if spec.get("held"):
            fake.hold_queue(spec.get("types"))
        else:
            fake.release_queue()
        return Response(status_code=204)

    async def session(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        match request.path_params["what"]:
            case "crash":
                try:
                    fake.crash(session_id)
                except KeyError:
                    return _text(f"session {session_id} not found", status_code=404)
            case "forget":
                fake.forget(session_id)
            case _:
                return _text("unknown action", status_code=404)
        return Response(status_code=204)

    return [
        Route("/faults", faults, methods=["POST", "DELETE"]),
        Route("/quirks", quirks, methods=["POST"]),
        Route("/requests", requests, methods=["GET"]),
        Route("/queue", queue, methods=["POST"]),
        Route("/sessions/{session_id}/{what}", session, methods=["POST"]),
    ]
