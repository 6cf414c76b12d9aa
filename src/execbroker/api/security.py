"""Headers every answer carries so that browsers treat it as data, never as a page to frame."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders"]

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# API answers are the caller's own records: nothing in between may keep a copy.
_API_ONLY = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# Pages served to browsers (interactive docs, dashboard) load their own scripts and styles.
_PAGES = ("/docs", "/redoc", "/ui")


class SecurityHeaders:
    """Pure ASGI middleware (so that streamed answers, e.g. Server-Sent Events, still stream)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        page = path.startswith(_PAGES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
                if not page:
                    for name, value in _API_ONLY.items():
                        headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
