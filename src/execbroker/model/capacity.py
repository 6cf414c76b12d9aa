"""What a booking holds: amounts of a pool's resources, and a hold of them over a time.

Plain values, shared by the planner (which adds holds up into a calendar) and storage (which
reads them from the bookings it keeps).

Besides cores, memory and storage, a booking may hold one of an account's *interactive
sessions*: a platform such as Skaha lets one account have only so many at once
(``maxInteractiveSessions``), so they are booked like any other resource. A pool with no such
limit has :data:`UNLIMITED` of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["UNLIMITED", "Amounts", "Hold"]

# More than any count the calendar holds, and small enough for a 32-bit SQL integer.
UNLIMITED = 2**31 - 1


@dataclass(frozen=True, order=True)
class Amounts:
    """Cores, memory, storage and interactive sessions of a pool: a capacity, a request or
    what is held.

    ``interactive`` counts the sessions an account limit counts (0 or 1 for one booking); a
    capacity with no such limit has :data:`UNLIMITED` of them.
    """

    cores: int = 0
    memory_gib: int = 0
    storage_gib: int = 0
    interactive: int = 0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.cores + other.cores,
            self.memory_gib + other.memory_gib,
            self.storage_gib + other.storage_gib,
            self.interactive + other.interactive,
        )

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.cores - other.cores,
            self.memory_gib - other.memory_gib,
            self.storage_gib - other.storage_gib,
            self.interactive - other.interactive,
        )

    def fits_within(self, limit: Amounts) -> bool:
        """Whether every amount is at most ``limit``'s."""
        return (
            self.cores <= limit.cores
            and self.memory_gib <= limit.memory_gib
            and self.storage_gib <= limit.storage_gib
            and self.interactive <= limit.interactive
        )

    def peak(self, other: Amounts) -> Amounts:
        """The larger of each amount."""
        return Amounts(
            max(self.cores, other.cores),
            max(self.memory_gib, other.memory_gib),
            max(self.storage_gib, other.storage_gib),
            max(self.interactive, other.interactive),
        )

    def floor(self, other: Amounts) -> Amounts:
        """The smaller of each amount."""
        return Amounts(
            min(self.cores, other.cores),
            min(self.memory_gib, other.memory_gib),
            min(self.storage_gib, other.storage_gib),
            min(self.interactive, other.interactive),
        )


@dataclass(frozen=True)
class Hold:
    """A booking of ``amounts`` over ``[start, end)``; ``group`` joins alternatives;
    ``offered``: a live offer, not (yet) an accepted session.
    """

    group: str
    start: datetime
    end: datetime
    amounts: Amounts
    offered: bool = False
