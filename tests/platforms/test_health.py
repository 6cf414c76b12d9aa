"""What a platform says of itself for ``/healthz``: ``Platform.health()``, and its wrapper."""

from __future__ import annotations

from uuid import UUID

from execbroker.platforms.base import Platform, PlatformHealth, PlatformStatus, Work
from execbroker.platforms.instrumented import InstrumentedPlatform


class Quiet(Platform):
    """A platform that says nothing of its health: the default answers for it."""

    name = "quiet"

    async def prepare(self, work: Work) -> PlatformStatus:
        raise NotImplementedError

    async def poll(self, work: Work) -> PlatformStatus:
        raise NotImplementedError

    async def release(self, work: Work) -> PlatformStatus:
        raise NotImplementedError

    async def objects(self) -> set[UUID]:
        return set()

    async def release_orphan(self, uuid: UUID) -> None:
        return None


class Locked(Quiet):
    """A platform whose credentials an operator must renew."""

    name = "locked"

    def health(self) -> PlatformHealth:
        return PlatformHealth(available=False, message="renew the refresh token")


def test_a_platform_that_says_nothing_is_available() -> None:
    assert Quiet().health() == PlatformHealth(available=True)


def test_the_metrics_wrapper_answers_with_the_platforms_own_health() -> None:
    assert InstrumentedPlatform(Locked()).health() == PlatformHealth(
        available=False, message="renew the refresh token"
    )
    assert InstrumentedPlatform(Quiet()).health().available
