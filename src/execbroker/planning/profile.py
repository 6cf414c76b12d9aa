"""What the planner knows of a platform: its pool, what it runs, how long steps take, rates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from execbroker.config import CostSettings, Settings
from execbroker.model import kinds
from execbroker.model.capacity import UNLIMITED, Amounts
from execbroker.model.estimates import LEARNED_ROLES, EstimateKey
from execbroker.model.records import ComponentRole
from execbroker.planning.estimates import EstimateBook, Learned

__all__ = ["PlatformProfile", "PreparingEstimate", "estimate_book", "profile_from_settings"]

# What each platform can run; a request for anything else is answered NO, saying so.
_EXECUTABLES = {
    "mock": frozenset({kinds.EXECUTABLE_DOCKER, kinds.EXECUTABLE_JUPYTER}),
    "skaha": frozenset({kinds.EXECUTABLE_DOCKER, kinds.EXECUTABLE_JUPYTER}),
    "docker": frozenset({kinds.EXECUTABLE_DOCKER}),
}


def _by_role(values: dict[str, timedelta]) -> dict[ComponentRole, timedelta]:
    return {ComponentRole(role): value for role, value in values.items()}


@dataclass(frozen=True)
class PreparingEstimate:
    """How long a step is planned to take to prepare (slack included), and the history it
    was learned from (None: the configured default).
    """

    duration: timedelta
    learned: Learned | None = None


@dataclass(frozen=True)
class PlatformProfile:
    """Built from settings by :func:`profile_from_settings`; the settings hold the defaults.

    ``compute_by_executable`` overrides the compute's preparing estimate by executable kind
    (a Skaha notebook's readiness); ``estimates`` holds the learned estimates, which win over
    both once they have enough history.
    """

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
    compute_by_executable: dict[str, timedelta] = field(default_factory=dict)
    estimates: EstimateBook = field(default_factory=EstimateBook)

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

    def preparing(
        self, role: ComponentRole, *, kind: str = "", image: str = ""
    ) -> PreparingEstimate:
        """The planned time to prepare a step, learned from history when there is enough of
        it (``kind`` and ``image``: the executable's, for the executable and the compute;
        the component's own kind otherwise), else the default; the slack added either way.
        """
        if role in LEARNED_ROLES:
            learned = self.estimates.learned(EstimateKey(self.name, role, kind, image))
            if learned is not None:
                return PreparingEstimate(learned.estimate + self.slack, learned)
        default = self.compute_by_executable.get(kind) if role is ComponentRole.COMPUTE else None
        if default is not None:
            return PreparingEstimate(default + self.slack)
        return PreparingEstimate(self.prepare_time(role))

    def release_time(self, role: ComponentRole) -> timedelta:
        return self.release.get(role, timedelta(0))


def _span(by_type: dict[str, float]) -> tuple[float, float]:
    """The lowest and highest figure over a platform's types (of core, of storage)."""
    return min(by_type.values()), max(by_type.values())


def estimate_book(settings: Settings) -> EstimateBook:
    """An empty book of learned estimates, planning with the configured percentile."""
    return EstimateBook(
        percentile=settings.planning.estimate_percentile,
        window=settings.planning.estimate_window,
        minimum=settings.planning.estimate_min_observations,
    )


def _prepare_defaults(
    settings: Settings,
) -> tuple[dict[ComponentRole, timedelta], dict[str, timedelta]]:
    """The preparing estimates by role, and the compute's by executable kind: as set, or on
    Skaha (``prepare_estimates`` not set) Skaha's own, minutes instead of the mock's seconds.
    """
    prepare = _by_role(settings.planning.prepare_estimates)
    if settings.platform != "skaha" or "prepare_estimates" in settings.planning.model_fields_set:
        return prepare, {}
    prepare[ComponentRole.COMPUTE] = settings.skaha.compute_estimate
    return prepare, {kinds.EXECUTABLE_JUPYTER: settings.skaha.notebook_estimate}


def profile_from_settings(
    settings: Settings, estimates: EstimateBook | None = None
) -> PlatformProfile:
    """The platform profile the planner plans against, from the settings: capacity, executable
    kinds, preparation and release estimates, slack and rates; ``estimates``: the learned ones.
    """
    prepare, by_executable = _prepare_defaults(settings)
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
        prepare=prepare,
        release=_by_role(settings.planning.release_estimates),
        slack=settings.planning.slack,
        staging_bytes_per_second=settings.planning.staging_mib_per_second * 2**20,
        cost=settings.cost,
        compute_performance=_span(settings.planning.compute_performance),
        io_throughput=_span(settings.planning.io_throughput),
        compute_by_executable=by_executable,
        estimates=estimates if estimates is not None else estimate_book(settings),
    )
