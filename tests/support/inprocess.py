"""A client of a broker that runs in the test's own process, and what it lets a test watch.

The ``broker`` fixture (tests/conftest.py) hands out an :class:`InProcessClient`: an
``httpx.AsyncClient`` on the app's ASGI transport that also holds the app, so that a test can
wait for what the broker does inside without sleeping for as long as it "should" take.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.support.waiting import eventually

__all__ = ["InProcessClient", "until_waiting"]


class InProcessClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` of the in-process broker ``app``."""

    def __init__(self, app: FastAPI, **options: Any) -> None:
        super().__init__(**options)
        self.app = app


async def until_waiting(client: httpx.AsyncClient, count: int, *, user: str = "alice") -> None:
    """Until the broker behind ``client`` counts ``count`` long-polls and event streams of
    ``user`` (it counts each before its first read, so a change made after this is heard)."""
    assert isinstance(client, InProcessClient), "needs the broker fixture's client"
    sessions = client.app.state.broker.sessions

    async def held() -> int:
        waiting: int = sessions.waiting(user)
        return waiting

    await eventually(held, lambda n: n >= count, what=f"{count} waiters of {user}", interval=0.01)
