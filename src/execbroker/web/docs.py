"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from files the broker serves itself.

FastAPI's own pages load unpinned scripts from a CDN, without integrity checks, on the
API's origin. Here the Swagger UI and ReDoc bundles come from the pinned
``fastapi-offline`` package and are served under ``/docs/assets/``; Swagger UI is started
by a small script of ours (``assets/docs-init.js``), so the pages need no inline script.
Every reference in the pages is relative: same origin, and right under any prefix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

__all__ = ["DOCS_ASSETS", "DOCS_POLICY", "router"]

router = APIRouter(include_in_schema=False)

# Scripts, styles, images and the OpenAPI document from this origin only. ReDoc's
# styled-components add <style> elements at run time (hence 'unsafe-inline' for styles,
# never for scripts) and its search runs in a worker made from a blob.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


def _bundled(name: str) -> Traversable:
    return resources.files("fastapi_offline") / "static" / name


def _ours(name: str) -> Traversable:
    return resources.files("execbroker.web") / "assets" / name


# The files served under /docs/assets/, and nothing else (no paths from the request).
DOCS_ASSETS = {
    "swagger-ui-bundle.js": lambda: _bundled("swagger-ui-bundle.js"),
    "swagger-ui.css": lambda: _bundled("swagger-ui.css"),
    "redoc.standalone.js": lambda: _bundled("redoc.standalone.js"),
    "favicon.png": lambda: _bundled("favicon.png"),
    "docs-init.js": lambda: _ours("docs-init.js"),
}

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>execbroker API</title>
<link rel="icon" href="docs/assets/favicon.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body data-openapi="openapi.json">
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/docs-init.js"></script>
</body>
</html>
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>execbroker API</title>
<link rel="icon" href="docs/assets/favicon.png">
</head>
<body>
<redoc spec-url="openapi.json"></redoc>
<script src="docs/assets/redoc.standalone.js"></script>
</body>
</html>
"""


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def _asset(name: str) -> _Asset:
    body = DOCS_ASSETS[name]().read_bytes()
    media_type = _MEDIA_TYPES[name[name.rfind(".") :]]
    return _Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:20]}"')


def _page(html: str) -> HTMLResponse:
    return HTMLResponse(
        html, headers={"Content-Security-Policy": DOCS_POLICY, "Cache-Control": "no-cache"}
    )


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return _page(_SWAGGER_PAGE)


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return _page(_REDOC_PAGE)


@router.get("/docs/assets/{name}")
async def docs_asset(name: str, request: Request) -> Response:
    if name not in DOCS_ASSETS:
        return Response("Not found\n", status_code=404, media_type="text/plain")
    asset = _asset(name)
    headers = {
        "Content-Security-Policy": DOCS_POLICY,
        # Revalidate every time (cheap: 304 by ETag), so an upgraded broker's files show.
        "Cache-Control": "no-cache",
        "ETag": asset.etag,
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
