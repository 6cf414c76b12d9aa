"""What the planner knows of a platform: its pool of resources and how long steps take."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from execbroker.config import Settings
from execbroker.model.records import ComponentRole

__all__ = ["PlatformProfile", "profile_from_settings"]


def _seconds(**kwargs: float) -> dict[ComponentRole, timedelta]:
    return {ComponentRole(role): timedelta(seconds=value) for role, value in kwargs.items()}


@dataclass(frozen=True)
class PlatformProfile:
    name: str
    cores: int
    memory_gib: int
    storage_gib: int
    # Estimates the planner schedules with; the lifecycle budgets add slack on top.
    prepare: dict[ComponentRole, timedelta] = field(
        default_factory=lambda: _seconds(executable=30, compute=30, storage=10, data=60, volume=0)
    )
    release: dict[ComponentRole, timedelta] = field(
        default_factory=lambda: _seconds(executable=5, compute=30, storage=10, data=10, volume=0)
    )


def profile_from_settings(settings: Settings) -> PlatformProfile:
    return PlatformProfile(
        name=settings.platform,
        cores=settings.capacity_cores,
        memory_gib=settings.capacity_memory_gib,
        storage_gib=settings.capacity_storage_gib,
    )
