"""Headers every answer carries so that browsers treat it as data, never as a page to frame."""

from __future__ import annotations

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


def _raw(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name.lower().encode(), value.encode()) for name, value in headers.items())


# As ASGI sends them, encoded once: (name, value) in lower case, in the order above.
_FOR_PAGES = _raw(_HEADERS)
_FOR_API = _raw(_HEADERS | _API_ONLY)


class SecurityHeaders:
    """Pure ASGI middleware (so that streamed answers, e.g. Server-Sent Events, still stream).

    Each header is added unless the answer sets it already.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        added = _FOR_PAGES if path.startswith(_PAGES) else _FOR_API

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                present = {name.lower() for name, _ in headers}
                message["headers"] = [
                    *headers,
                    *(header for header in added if header[0] not in present),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
