"""The operator's calendar: the pool's bookings over a range, held against used.

For administrators only: it names every user's sessions. The range is bounded
(:data:`MAX_RANGE`) and so is what one answer reads (:data:`MAX_BOOKINGS`), so that one call
costs at most one indexed range read of that many rows and their sort.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from execbroker.auth.identity import Caller
from execbroker.clock import Clock
from execbroker.exceptions import ForbiddenError, UnprocessableError
from execbroker.model.isotime import format_duration, format_instant
from execbroker.planning.occupancy import Occupancy, occupancy
from execbroker.planning.profile import PlatformProfile
from execbroker.storage.store import BrokerStore

__all__ = ["DEFAULT_RANGE", "MAX_BOOKINGS", "MAX_RANGE", "OccupancyService"]

DEFAULT_RANGE = timedelta(hours=24)
"""The range shown when none is asked for: the next 24 hours."""
MAX_RANGE = timedelta(days=7)
"""The longest range one answer covers."""
FARTHEST = timedelta(days=100 * 366)
"""How far from now a range may start or end: far enough for any booking, and far enough
from the ends of the calendar (years 1 and 9999) that the arithmetic around a range stays on
it."""
MAX_BOOKINGS = 2000
"""The most bookings one answer reads (the first by start); past it the answer says so."""


class OccupancyService:
    """Reads the pool's calendar for administrators (:meth:`pool_calendar`)."""

    def __init__(self, *, store: BrokerStore, clock: Clock, profile: PlatformProfile) -> None:
        self._store = store
        self._clock = clock
        self._profile = profile

    async def pool_calendar(
        self, *, caller: Caller, start: datetime | None, end: datetime | None
    ) -> Occupancy:
        """The pool over ``[start, end)``: by default from now, for :data:`DEFAULT_RANGE`
        (only one end given: the other is that far from it). 403 for anyone but an
        administrator; 422 for a range that ends before it starts or is longer than
        :data:`MAX_RANGE`.
        """
        if not caller.admin:
            raise ForbiddenError(
                "Only the broker's administrators may read the pool's calendar; "
                "{user} is not one of them",
                {"user": caller.label},
            )
        now = self._clock.now()
        for name, instant in (("from", start), ("to", end)):
            if instant is not None and abs(instant - now) > FARTHEST:
                raise UnprocessableError(
                    "The range's {name} ({instant}) is more than 100 years from now; the "
                    "calendar holds nothing that far off",
                    {"name": name, "instant": format_instant(instant)},
                    path=name,
                )
        if start is None:
            start = now if end is None else end - DEFAULT_RANGE
        if end is None:
            end = start + DEFAULT_RANGE
        if end <= start:
            raise UnprocessableError(
                "The range must end after it starts: to ({end}) is not after from ({start})",
                {"start": format_instant(start), "end": format_instant(end)},
                path="to",
            )
        if end - start > MAX_RANGE:
            raise UnprocessableError(
                "The range from {start} to {end} is {length} long; the calendar shows at "
                "most {most} at once",
                {
                    "start": format_instant(start),
                    "end": format_instant(end),
                    "length": format_duration(end - start),
                    "most": format_duration(MAX_RANGE),
                },
                path="to",
            )
        found = await self._store.calendar.bookings(start, end, now=now, limit=MAX_BOOKINGS + 1)
        return occupancy(
            found[:MAX_BOOKINGS],
            start=start,
            end=end,
            now=now,
            capacity=self._profile.capacity,
            truncated=len(found) > MAX_BOOKINGS,
        )
