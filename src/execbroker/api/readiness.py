"""One database ping shared by every ``/healthz`` caller, reused for a second.

A load balancer (or several, or a monitoring system besides) may poll ``/healthz`` many
times a second; each poll used to cost a round trip to the database. :class:`SharedPing`
pings once for all of them:

- a ping **sent** less than ``fresh_for`` seconds ago (:data:`FRESH_FOR`, 1 s) answers for
  everyone, whether it found the database answering or not;
- otherwise the next caller sends one, and every caller meanwhile waits for that same ping
  (single flight) instead of sending its own;
- a ping that gets no answer within ``timeout`` seconds (:data:`TIMEOUT`, 5 s, as long as
  the storage probe gives a write) counts as a failure, so a database that stops answering
  is reported rather than leaving ``/healthz`` hanging.

Since freshness is counted from when the ping was sent, a database that stops answering is
reported by every ``/healthz`` that starts more than ``fresh_for`` seconds later (after
waiting at most ``timeout`` for a ping that hangs). A caller that goes away does not cancel
the ping the others wait for.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from execbroker.background import cancel_and_wait

__all__ = ["FRESH_FOR", "TIMEOUT", "SharedPing"]

FRESH_FOR = 1.0
TIMEOUT = 5.0


class SharedPing:
    """``await failure()``: None if the database answered a recent ping, else what stopped it."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[None]],
        *,
        fresh_for: float = FRESH_FOR,
        timeout: float = TIMEOUT,
    ) -> None:
        self._ping = ping
        self.fresh_for = fresh_for
        self.timeout = timeout
        self._sent_at = -math.inf
        self._failure: Exception | None = None
        self._flight: asyncio.Task[None] | None = None

    async def failure(self) -> Exception | None:
        """None when the latest ping (sent within ``fresh_for`` seconds, or now) found the
        database answering; else what stopped it (:class:`TimeoutError` past ``timeout``).
        """
        loop = asyncio.get_running_loop()
        if self._flight is None and loop.time() - self._sent_at >= self.fresh_for:
            self._sent_at = loop.time()
            self._flight = asyncio.create_task(self._send(), name="healthz database ping")
        if self._flight is not None:
            await asyncio.shield(self._flight)
        return self._failure

    async def _send(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._ping()
        except Exception as failure:  # whatever stops a ping is what /healthz reports
            self._failure = failure
        else:
            self._failure = None
        finally:
            self._flight = None

    async def aclose(self) -> None:
        """Cancel a ping still in flight (at shutdown)."""
        await cancel_and_wait(self._flight)
