"""Who is waiting for a session to change: long-polls and event streams.

In one process, a change wakes its waiters at once. Waiters also look again on their own
every ``recheck`` seconds, so that changes made by another broker process on the same
database are seen too (issue "scale out" replaces that with LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from uuid import UUID

__all__ = ["ChangeFeed"]


class ChangeFeed:
    def __init__(self, *, recheck: float = 1.0) -> None:
        self.recheck = recheck
        self._events: dict[UUID, set[asyncio.Event]] = defaultdict(set)

    def publish(self, uuid: UUID) -> None:
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
