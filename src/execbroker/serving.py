"""How ``execbroker serve`` runs uvicorn: its HTTP protocol, with a deadline on headers.

uvicorn closes a keep-alive connection that stays idle between requests
(``timeout_keep_alive``, our ``idle_timeout``), but waits forever for a new connection's first
request and for headers that arrive a byte at a time. :func:`protocol_with_header_deadline`
gives its httptools protocol a deadline: from the connection's opening, or from a request's
first byte, its headers must be complete within ``header_timeout`` seconds, or the connection
is closed. The body is bounded by :class:`execbroker.api.limits.BodyDeadline`.

httptools also reads headers of any size, holding them until they are complete; with
``max_head_bytes`` the protocol counts what a request sends before its headers are complete
and, past that many bytes, answers ``431`` and closes the connection at once. The limit is
loose on purpose (the request line may be long, and a read may carry some body with it):
:class:`execbroker.api.header_limits.HeaderLimits` applies the exact limits to complete
headers.
"""

from __future__ import annotations

import asyncio
import functools
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from execbroker.config import Settings, load_settings
from execbroker.model.messages import make_message
from execbroker.model.phases import MessageLevel
from execbroker.model.wire import dump

__all__ = [
    "SettingsHeaderDeadlineProtocol",
    "head_limits",
    "protocol_with_header_deadline",
]


def _head_too_large(limit: int) -> bytes:
    message = make_message(
        MessageLevel.ERROR,
        "The request line and headers exceed {limit} bytes; the connection is closed",
        {"limit": limit},
    )
    body = json.dumps(
        {"error": "headers_too_large", "status": 431, "messages": [dump(message)]}
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "x-content-type-options: nosniff\r\n"
        "cache-control: no-store\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class _HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    max_head_bytes: int | None = None
    _header_deadline: asyncio.TimerHandle | None = None
    _in_head = True  # the current request's headers are not complete yet
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        limit = self.max_head_bytes
        if (
            limit is not None
            and self._in_head
            and self._head_bytes > limit
            and not self.transport.is_closing()
        ):
            self.transport.write(_head_too_large(limit))
            self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        self._in_head = False
        super().on_headers_complete()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_with_header_deadline(
    header_timeout: float, *, max_head_bytes: int | None = None
) -> type[HttpToolsProtocol]:
    """The httptools protocol of uvicorn, closing connections whose headers are late (or, with
    ``max_head_bytes``, larger than that).
    """
    return type(
        "HeaderDeadlineProtocol",
        (_HeaderDeadlineProtocol,),
        {"header_timeout": header_timeout, "max_head_bytes": max_head_bytes},
    )


def head_limits(settings: Settings) -> tuple[float, int]:
    """``(header_timeout, max_head_bytes)`` for :func:`protocol_with_header_deadline`."""
    return (
        settings.server.header_timeout.total_seconds(),
        # Room for a long request line (httptools refuses URLs from 64 KiB) and a read that
        # carries body bytes; HeaderLimits answers complete headers exactly.
        settings.server.max_header_bytes + 128 * 1024,
    )


@functools.cache
def _limits_in_force() -> tuple[float, int]:
    return head_limits(load_settings())


class SettingsHeaderDeadlineProtocol(_HeaderDeadlineProtocol):
    """The protocol with the limits of the settings in force (``EXECBROKER_*``), by a name
    uvicorn can import: each worker process of ``serve --workers`` loads it so, since a class
    made at run time does not cross into a new process.
    """

    @property
    def header_timeout(self) -> float:  # type: ignore[override]
        return _limits_in_force()[0]

    @property
    def max_head_bytes(self) -> int:  # type: ignore[override]
        return _limits_in_force()[1]
