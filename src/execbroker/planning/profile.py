"""What the planner knows of a platform: its pool, what it runs, how long steps take, rates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from execbroker.config import CostSettings, Settings
from execbroker.model import kinds
from execbroker.model.capacity import UNLIMITED, Amounts
from execbroker.model.records import ComponentRole

__all__ = ["PlatformProfile", "profile_from_settings"]

# What each platform can run; a request for anything else is answered NO, saying so.
_EXECUTABLES = {
    "mock": frozenset({kinds.EXECUTABLE_DOCKER, kinds.EXECUTABLE_JUPYTER}),
    "skaha": frozenset({kinds.EXECUTABLE_DOCKER, kinds.EXECUTABLE_JUPYTER}),
    "docker": frozenset({kinds.EXECUTABLE_DOCKER}),
}


def _by_role(values: dict[str, timedelta]) -> dict[ComponentRole, timedelta]:
    return {ComponentRole(role): value for role, value in values.items()}


@dataclass(frozen=True)
class PlatformProfile:
    """Built from settings by :func:`profile_from_settings`; the settings hold the defaults."""

    name: str
    capacity: Amounts
    executable_kinds: frozenset[str]
    prepare: dict[ComponentRole, timedelta]
    release: dict[ComponentRole, timedelta]
    slack: timedelta
    staging_bytes_per_second: float
    cost: CostSettings  # per-hour rates that turn offered amounts and durations into costs
    compute_performance: tuple[float, float]  # benchmark score of one core: min, max
    io_throughput: tuple[float, float]  # MB/s: min, max

    @property
    def cores(self) -> int:
        return self.capacity.cores

    @property
    def memory_gib(self) -> int:
        return self.capacity.memory_gib

    @property
    def storage_gib(self) -> int:
        return self.capacity.storage_gib

    def prepare_time(self, role: ComponentRole) -> timedelta:
        """The planned time to prepare: the estimate plus the slack (none for nothing)."""
        estimate = self.prepare.get(role, timedelta(0))
        return estimate + self.slack if estimate else timedelta(0)

    def release_time(self, role: ComponentRole) -> timedelta:
        return self.release.get(role, timedelta(0))


def _span(by_type: dict[str, float]) -> tuple[float, float]:
    """The lowest and highest figure over a platform's types (of core, of storage)."""
    return min(by_type.values()), max(by_type.values())


def profile_from_settings(settings: Settings) -> PlatformProfile:
    """The platform profile the planner plans against, from the settings: capacity, executable
    kinds, preparation and release estimates, slack and rates.
    """
    return PlatformProfile(
        name=settings.platform,
        capacity=Amounts(
            settings.planning.capacity_cores,
            settings.planning.capacity_memory_gib,
            settings.planning.capacity_storage_gib,
            # No account limit unless the platform has one (Platform.limits).
            UNLIMITED,
        ),
        executable_kinds=_EXECUTABLES[settings.platform],
        prepare=_by_role(settings.planning.prepare_estimates),
        release=_by_role(settings.planning.release_estimates),
        slack=settings.planning.slack,
        staging_bytes_per_second=settings.planning.staging_mib_per_second * 2**20,
        cost=settings.cost,
        compute_performance=_span(settings.planning.compute_performance),
        io_throughput=_span(settings.planning.io_throughput),
    )
