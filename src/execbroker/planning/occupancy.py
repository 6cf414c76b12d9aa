"""The pool over a range of time, for its operator: what was and is *held* (booked) and what
was and is *used* (run on the platform), and the utilisation of each.

- **Held**: a booking holds ``[book_start, book_end)``, as the planner counts it (offers of
  one set, being alternatives, count once, at their largest: :class:`Usage`). A session
  that has ended held its booking only until it ended (then the planner gave the rest back).
- **Used**: a session uses the pool from the moment the broker asks the platform to start
  its compute until that compute's release has finished. A session whose compute has
  started and not yet been released counts as used until the end of its booking (it may end
  earlier; then the range, read again, shows when). A booking whose compute has not started
  is merely booked: held, not used.
- **Utilisation** over ``[start, end)``: core-seconds held (or used) inside the range over
  the pool's core-seconds in it (its cores times the range's length).

Pure: the bookings come in (:func:`execbroker.storage.queries.pool_bookings`), the
numbers go out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from execbroker.model.capacity import Amounts, Hold
from execbroker.model.occupancy import PoolBooking
from execbroker.model.phases import SessionPhase
from execbroker.planning.calendar import Usage

__all__ = ["BookedSpans", "Occupancy", "Span", "Step", "occupancy"]


@dataclass(frozen=True)
class Span:
    """``[start, end)``."""

    start: datetime
    end: datetime

    def seconds_within(self, start: datetime, end: datetime) -> float:
        """How many seconds of ``[start, end)`` this span covers."""
        return max((min(self.end, end) - max(self.start, start)).total_seconds(), 0.0)


@dataclass(frozen=True)
class BookedSpans:
    """A booking, with when it held the pool and when it used it (None: never)."""

    booking: PoolBooking
    held: Span | None
    used: Span | None


@dataclass(frozen=True)
class Step:
    """From ``at`` until the next step (or the range's end): held and used amounts."""

    at: datetime
    held: Amounts
    used: Amounts


@dataclass(frozen=True, kw_only=True)
class Occupancy:
    """The pool over ``[start, end)`` as read at ``now``."""

    start: datetime
    end: datetime
    now: datetime
    capacity: Amounts
    bookings: list[BookedSpans]
    steps: list[Step]
    held_core_seconds: float
    used_core_seconds: float
    # More bookings overlapped the range than were read: the numbers count only those read.
    truncated: bool = False

    @property
    def pool_core_seconds(self) -> float:
        return self.capacity.cores * (self.end - self.start).total_seconds()

    @property
    def held_utilisation(self) -> float:
        return self.held_core_seconds / self.pool_core_seconds

    @property
    def used_utilisation(self) -> float:
        return self.used_core_seconds / self.pool_core_seconds


def held_span(booking: PoolBooking) -> Span | None:
    """When ``booking`` held the pool: all of it while it holds, else until it ended."""
    end = booking.end if booking.holding else min(booking.end, booking.modified)
    return Span(booking.start, end) if end > booking.start else None


def used_span(booking: PoolBooking, *, now: datetime) -> Span | None:
    """When ``booking``'s compute ran on the platform: until its release finished, or (not
    released yet) until the later of the booking's end and ``now``.
    """
    if booking.compute_started is None:
        return None
    end = booking.compute_ended or max(booking.end, now)
    return Span(booking.compute_started, end) if end > booking.compute_started else None


def _group(booking: PoolBooking) -> str:
    if booking.phase is SessionPhase.OFFERED and booking.offer_set_uuid is not None:
        return str(booking.offer_set_uuid)
    return str(booking.uuid)


def occupancy(
    bookings: Iterable[PoolBooking],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    capacity: Amounts,
    truncated: bool = False,
) -> Occupancy:
    """Held and used over ``[start, end)``: each booking's spans, the steps of both, and the
    core-seconds of each inside the range.
    """
    spans = [BookedSpans(b, held_span(b), used_span(b, now=now)) for b in bookings]
    held = Usage(
        Hold(_group(s.booking), s.held.start, s.held.end, s.booking.amounts)
        for s in spans
        if s.held is not None
    )
    used = Usage(
        Hold(str(s.booking.uuid), s.used.start, s.used.end, s.booking.amounts)
        for s in spans
        if s.used is not None
    )
    moments = sorted({start, *held.breakpoints(start, end), *used.breakpoints(start, end)})
    steps: list[Step] = []
    held_core_seconds = used_core_seconds = 0.0
    for index, moment in enumerate(moments):
        following = moments[index + 1] if index + 1 < len(moments) else end
        # No breakpoint lies inside [moment, following): the peak is the level there.
        step = Step(moment, held.peak(moment, following), used.peak(moment, following))
        if steps and (steps[-1].held, steps[-1].used) == (step.held, step.used):
            step = steps.pop()
        steps.append(step)
        seconds = (following - moment).total_seconds()
        held_core_seconds += step.held.cores * seconds
        used_core_seconds += step.used.cores * seconds
    return Occupancy(
        start=start,
        end=end,
        now=now,
        capacity=capacity,
        bookings=spans,
        steps=steps,
        held_core_seconds=held_core_seconds,
        used_core_seconds=used_core_seconds,
        truncated=truncated,
    )
