"""A platform wrapper that counts and times every call (``execbroker_platform_*`` metrics)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from uuid import UUID

from prometheus_client import Counter, Histogram

from execbroker.metrics import PLATFORM_CALL_SECONDS, PLATFORM_CALLS, PLATFORM_ERRORS
from execbroker.model.plan import Plan
from execbroker.platforms.base import (
    OwnerPhases,
    Platform,
    PlatformHealth,
    PlatformLimits,
    PlatformStatus,
    Work,
)

__all__ = ["InstrumentedPlatform"]

T = TypeVar("T")


class InstrumentedPlatform(Platform):
    """A platform that counts and times every call of the platform it wraps
    (``execbroker_platform_*``).
    """

    def __init__(self, inner: Platform) -> None:
        self.inner = inner
        self.name = inner.name
        self._children: dict[str, tuple[Counter, Counter, Histogram]] = {}

    def _metrics(self, endpoint: str) -> tuple[Counter, Counter, Histogram]:
        found = self._children.get(endpoint)
        if found is None:  # label lookups cost: once per endpoint, not once per call
            labels = (self.name, endpoint)
            found = (
                PLATFORM_CALLS.labels(*labels),
                PLATFORM_ERRORS.labels(*labels),
                PLATFORM_CALL_SECONDS.labels(*labels),
            )
            self._children[endpoint] = found
        return found

    async def _timed(self, endpoint: str, call: Callable[[], Awaitable[T]]) -> T:
        calls, errors, seconds = self._metrics(endpoint)
        calls.inc()
        started = time.perf_counter()
        try:
            return await call()
        except Exception:
            errors.inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    def health(self) -> PlatformHealth:
        return self.inner.health()

    def shape(self, plan: Plan) -> Plan:
        return self.inner.shape(plan)

    async def admit(self, owner: str, token: str | None) -> None:
        await self.inner.admit(owner, token)

    def limits(self) -> PlatformLimits:
        return self.inner.limits()

    def interactive(self, plan: Plan) -> bool:
        return self.inner.interactive(plan)

    async def prepare(self, work: Work) -> PlatformStatus:
        return await self._timed(f"prepare {work.role.value}", lambda: self.inner.prepare(work))

    async def poll(self, work: Work) -> PlatformStatus:
        return await self._timed(f"poll {work.role.value}", lambda: self.inner.poll(work))

    async def release(self, work: Work) -> PlatformStatus:
        return await self._timed(f"release {work.role.value}", lambda: self.inner.release(work))

    async def objects(self) -> set[UUID]:
        return await self._timed("objects", self.inner.objects)

    async def release_orphan(self, uuid: UUID) -> None:
        await self._timed("release orphan", lambda: self.inner.release_orphan(uuid))

    def sweep_periodically(self, phases: OwnerPhases) -> None:
        self.inner.sweep_periodically(phases)
