"""What a booking holds: amounts of a pool's resources, and a hold of them over a time.

Plain values, shared by the planner (which adds holds up into a calendar) and storage (which
reads them from the bookings it keeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["Amounts", "Hold"]


@dataclass(frozen=True, order=True)
class Amounts:
    """Cores, memory and storage of a pool: a capacity, a request or what is held."""

    cores: int = 0
    memory_gib: int = 0
    storage_gib: int = 0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.cores + other.cores,
            self.memory_gib + other.memory_gib,
            self.storage_gib + other.storage_gib,
        )

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.cores - other.cores,
            self.memory_gib - other.memory_gib,
            self.storage_gib - other.storage_gib,
        )

    def fits_within(self, limit: Amounts) -> bool:
        return (
            self.cores <= limit.cores
            and self.memory_gib <= limit.memory_gib
            and self.storage_gib <= limit.storage_gib
        )

    def peak(self, other: Amounts) -> Amounts:
        """The larger of each amount."""
        return Amounts(
            max(self.cores, other.cores),
            max(self.memory_gib, other.memory_gib),
            max(self.storage_gib, other.storage_gib),
        )

    def floor(self, other: Amounts) -> Amounts:
        """The smaller of each amount."""
        return Amounts(
            min(self.cores, other.cores),
            min(self.memory_gib, other.memory_gib),
            min(self.storage_gib, other.storage_gib),
        )


@dataclass(frozen=True)
class Hold:
    """A booking of ``amounts`` over ``[start, end)``; ``group`` joins alternatives."""

    group: str
    start: datetime
    end: datetime
    amounts: Amounts
