"""What long-polls and event streams need from HTTP: the client's presence, its credentials.

A long-poll (``GET /sessions/{uuid}?wait=``) is cancelled as soon as its client disconnects
(:func:`unless_disconnected`), so that an abandoned one costs nothing; event streams are
cancelled by Starlette's own disconnect listener. Both re-check the caller's bearer token
while they wait (:func:`credential_check`), so that a token revoked from the tokens file, or
a JWT that expired, ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from execbroker.api.dependencies import Broker
from execbroker.auth.identity import Caller
from execbroker.exceptions import UnauthorizedError
from execbroker.lifecycle.changes import WaiterSlot

__all__ = ["HeldStream", "credential_check", "unless_disconnected"]

T = TypeVar("T")


async def _until_disconnected(request: Request) -> None:
    # The request has no body left to read: the next message is the client going away.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """``work``'s result, or None (with ``work`` cancelled) once the client disconnected."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (gone, task):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if task.cancelled():
        return None
    return task.result()


def credential_check(
    request: Request, broker: Broker, caller: Caller
) -> Callable[[], Awaitable[object]]:
    """A check that raises :class:`UnauthorizedError` once the request's bearer token no
    longer authenticates the user it did (revoked, expired, given to someone else).
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()

    async def check() -> object:
        if scheme.lower() != "bearer" or not token:
            raise UnauthorizedError("This needs a bearer token (Authorization: Bearer <token>)")
        name = await broker.authenticator.username(token)
        if name != caller.name:
            raise UnauthorizedError("The bearer token is not valid", invalid_token=True)
        return name

    return check


class HeldStream(StreamingResponse):
    """A streamed answer that holds one of the caller's waiter slots until it is done,
    however it ends (finished, client gone, cancelled before its first byte).
    """

    def __init__(self, *args: Any, slot: WaiterSlot, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()
