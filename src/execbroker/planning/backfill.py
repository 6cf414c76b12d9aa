"""Moving accepted sessions earlier when capacity frees up: conservative backfill.

The backfill looks at the accepted sessions that have not begun in the order they were
accepted (first come, first served) and moves each to the earliest start the calendar allows
now, given every other booking — including those of the sessions accepted before it, as
they were just moved. A booking only ever moves earlier into capacity nobody holds, so no
session is delayed, whoever was accepted first; and since the sessions accepted first pick
first, a large request waiting for its start is not overtaken into the capacity it needs by
the small ones accepted after it (Slurm's conservative backfill).

:func:`earliest_start` decides one session's move; the service
(:mod:`execbroker.services.backfill`) walks the sessions and books the moves.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from execbroker.model.capacity import Amounts
from execbroker.model.moves import WaitingSession
from execbroker.planning.calendar import Usage
from execbroker.planning.offers import FreeNow

__all__ = ["MIN_GAIN", "earliest_start", "move"]

# A move smaller than this is not worth a message (starts are on whole seconds).
MIN_GAIN = timedelta(seconds=1)


def _ceil_second(moment: datetime) -> datetime:
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def earliest_start(
    session: WaitingSession,
    usage: Usage,
    *,
    capacity: Amounts,
    now: datetime,
    free_now: FreeNow | None = None,
) -> datetime | None:
    """The earliest start, at least :data:`MIN_GAIN` before its current one, at which
    ``session`` fits in ``usage`` (which holds the session itself where it is booked now)
    within ``capacity``; None when there is none.

    It is never before its request allows (``earliest_start``), nor so soon that it could
    not prepare (``now`` plus its lead). As the planner does, a booking that begins before
    ``free_now.until`` must also fit in what the platform shows free now.
    """
    current = session.available_start
    floor = _ceil_second(max(session.earliest_start, now + session.lead))
    latest = current - MIN_GAIN
    if floor > latest:
        return None
    candidates = [floor]
    # Where something held ends, a booking may begin: each such instant is a start to try.
    candidates.extend(
        start
        for moment in usage.breakpoints(floor - session.lead, latest - session.lead)
        if floor < (start := _ceil_second(moment + session.lead)) <= latest
    )
    if free_now is not None:
        renewed = _ceil_second(free_now.until + session.lead)
        if floor < renewed <= latest:
            candidates.append(renewed)
    for start in sorted(set(candidates)):
        if fits(session, start, usage, capacity=capacity, free_now=free_now):
            return start
    return None


def fits(
    session: WaitingSession,
    start: datetime,
    usage: Usage,
    *,
    capacity: Amounts,
    free_now: FreeNow | None = None,
) -> bool:
    """Whether ``session``, booked from ``start`` on instead, fits beside everything else
    ``usage`` holds. ``usage`` holds the session where it is now: where the new booking
    overlaps the old one, what is held already counts it.
    """
    begin = start - session.lead
    end = begin + session.span
    amounts = session.amounts
    if (
        free_now is not None
        and begin < free_now.until
        and not amounts.fits_within(free_now.amounts)
    ):
        return False
    before_own = min(end, session.book_start)
    if begin < before_own and not (usage.peak(begin, before_own) + amounts).fits_within(capacity):
        return False
    return not (
        end > session.book_start and not usage.peak(session.book_start, end).fits_within(capacity)
    )


def move(session: WaitingSession, start: datetime, usage: Usage) -> None:
    """Book ``session`` from ``start`` on in ``usage`` instead of where it was."""
    shift = start - session.available_start
    negative = Amounts() - session.amounts
    usage.add(session.book_start, session.book_end, negative)
    usage.add(session.book_start + shift, session.book_end + shift, session.amounts)
