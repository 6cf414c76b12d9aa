"""What the sync and async clients share besides the operations: connection settings,
HTTP options, and the update documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

import execbroker
from execbroker.client.protocol import Call
from execbroker.client.settings import Connection, resolve_connection
from execbroker.model.phases import SessionPhase
from execbroker.model.wire import EnumValueUpdate, IntegerDeltaUpdate

__all__ = ["ClientBase", "describe_transport_error"]

_CONNECT_TIMEOUT = 10.0


class ClientBase:
    """The connection (``url``, ``token``) and what follows from it."""

    def __init__(self, url: str | None, token: str | None, *, timeout: float) -> None:
        self.connection: Connection = resolve_connection(url, token)
        self.timeout = timeout

    @property
    def url(self) -> str:
        return self.connection.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    def _http_options(self) -> dict[str, Any]:
        headers = {
            "Accept": "application/json",
            "User-Agent": f"execbroker-client/{execbroker.__version__}",
        }
        if self.connection.token:
            headers["Authorization"] = f"Bearer {self.connection.token}"
        return {
            "base_url": self.url,
            "headers": headers,
            "timeout": httpx.Timeout(self.timeout, connect=_CONNECT_TIMEOUT),
            # A 303 is read here, and its Location is resolved against our own base URL.
            "follow_redirects": False,
        }

    def _timeout_for(self, call: Call) -> httpx.Timeout:
        read = self.timeout if call.read_timeout is None else max(call.read_timeout, self.timeout)
        return httpx.Timeout(self.timeout, connect=_CONNECT_TIMEOUT, read=read)

    @staticmethod
    def phase_update(phase: SessionPhase) -> EnumValueUpdate:
        """The update that moves a session to ``phase`` (accept, reject, cancel)."""
        return EnumValueUpdate(path="/phase", value=phase.value)

    @staticmethod
    def extension(seconds: int) -> IntegerDeltaUpdate:
        """The update that lengthens the available time by ``seconds``."""
        if seconds <= 0:
            raise ValueError("an extension is a positive number of seconds")
        return IntegerDeltaUpdate(
            path="/schedule/available/duration", delta=int(seconds), units="seconds"
        )

    @staticmethod
    def _phases(
        phase: SessionPhase | str | Iterable[SessionPhase | str] | None,
    ) -> list[SessionPhase]:
        if phase is None:
            return []
        if isinstance(phase, str):  # a SessionPhase is a str too
            return [SessionPhase(phase.upper())]
        return [SessionPhase(p.upper()) for p in phase]


def describe_transport_error(failure: httpx.TransportError) -> str:
    """A short reason for a transport failure, for people."""
    match failure:
        case httpx.ConnectError():
            reason = "connection failed"
        case httpx.TimeoutException():
            reason = "timed out"
        case httpx.RemoteProtocolError():
            reason = "the connection was closed"
        case _:
            reason = type(failure).__name__
    detail = str(failure)
    return f"{reason} ({detail})" if detail and detail != reason else reason
