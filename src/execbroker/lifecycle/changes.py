"""Who is waiting for a session to change: long-polls and event streams.

In one process, a change wakes its waiters at once. Across processes on PostgreSQL, every
change is also sent through ``outbox`` (NOTIFY, :mod:`execbroker.lifecycle.notify`) and
changes from other processes arrive through :meth:`ChangeFeed.deliver`. Waiters also look
again on their own every ``recheck`` seconds: on SQLite (one process) that is the fallback
for anything else writing the database; on PostgreSQL, a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from uuid import UUID

__all__ = ["ChangeFeed"]


class ChangeFeed:
    def __init__(self, *, recheck: float = 1.0) -> None:
        self.recheck = recheck
        self.outbox: Callable[[UUID], None] | None = None
        self._events: dict[UUID, set[asyncio.Event]] = defaultdict(set)

    def publish(self, uuid: UUID) -> None:
        """This process changed ``uuid``: wake its waiters here and tell the others."""
        self.deliver(uuid)
        if self.outbox is not None:
            self.outbox(uuid)

    def deliver(self, uuid: UUID) -> None:
        """``uuid`` changed (here or in another process): wake its waiters here."""
        for event in self._events.get(uuid, ()):
            event.set()

    async def wait(self, uuid: UUID, seconds: float) -> None:
        """Return when ``uuid`` may have changed, or after ``seconds`` (or ``recheck``)."""
        event = asyncio.Event()
        self._events[uuid].add(event)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(seconds, self.recheck)):
                    await event.wait()
        finally:
            waiters = self._events.get(uuid)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._events[uuid]
