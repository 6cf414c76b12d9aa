"""``/ui``: the dashboard, a few static pages whose scripts call the broker's own API.

The pages and their scripts are files in this package, served as they are (no build step,
nothing from elsewhere): they hold no user data and need no token. The scripts ask for a
token once, keep it in the tab's ``sessionStorage`` and send it as ``Authorization: Bearer``
on every API call, including the event stream (read with ``fetch``, as ``EventSource``
cannot send headers).

No page hands out a token. ``execbroker dashboard`` prints a login link carrying the local
token in the URL *fragment* (``/ui/#token=…``), which browsers never send to a server; the
page's script moves it into ``sessionStorage`` and removes it from the address at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

__all__ = ["PAGE_POLICY", "router"]

router = APIRouter(include_in_schema=False)

# Strict but working: the pages run their own scripts and styles and talk to their own
# origin; no inline code, no other origin, no framing, no <base> games.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The files under assets/ that are served, and nothing else (no paths from the request).
STATIC_FILES = frozenset(
    {
        "dashboard.css",
        "common.js",
        "sessions.js",
        "request.js",
        "session.js",
        "calendar.js",
        "icon.svg",
    }
)


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def _asset(name: str) -> _Asset:
    body = (resources.files("execbroker.web") / "assets" / name).read_bytes()
    suffix = name[name.rfind(".") :]
    return _Asset(body, _MEDIA_TYPES[suffix], f'"{hashlib.sha256(body).hexdigest()[:20]}"')


def _serve(name: str, request: Request) -> Response:
    asset = _asset(name)
    headers = {
        "Content-Security-Policy": PAGE_POLICY,
        # Revalidate every time (cheap: 304 by ETag), so an upgraded broker's pages show.
        "Cache-Control": "no-cache",
        "ETag": asset.etag,
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _not_found() -> Response:
    return Response("Not found\n", status_code=404, media_type="text/plain")


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    # Relative, so that it stays under whatever prefix a proxy serves the broker at.
    return RedirectResponse("ui/", status_code=308)


@router.get("/ui/")
async def sessions_page(request: Request) -> Response:
    return _serve("index.html", request)


@router.get("/ui/new")
async def request_page(request: Request) -> Response:
    return _serve("new.html", request)


@router.get("/ui/calendar")
async def calendar_page(request: Request) -> Response:
    # The pool's bookings, for administrators: its script reads GET /admin/calendar.
    return _serve("calendar.html", request)


@router.get("/ui/sessions/{uuid}")
async def session_page(uuid: str, request: Request) -> Response:
    # The same page for every session: its script reads the UUID from the address.
    try:
        UUID(uuid)
    except ValueError:
        return _not_found()
    return _serve("session.html", request)


@router.get("/ui/static/{name}")
async def static_file(name: str, request: Request) -> Response:
    if name not in STATIC_FILES:
        return _not_found()
    return _serve(name, request)
