"""Moving accepted sessions earlier when capacity frees up (issue 19, conservative backfill).

At the end of each engine pass, if anything freed capacity since the last look
(:class:`~execbroker.lifecycle.freed.FreedCapacity`) and some accepted session waits that
may move earlier, the backfill takes the pool's lock (a locked booking, like any other
decision that books), reads the exact calendar, and walks the waiting sessions first
accepted first. Each moves to the earliest start the calendar allows now
(:func:`~execbroker.planning.backfill.earliest_start`) — never later than it was, never
before its request allows, with its duration and resources — and the calendar it is
judged against holds the moves already made. Each move is written with the session's new
schedule and a message saying from when to when, and what freed the capacity; its waiters
and the engine are woken, and it is counted in ``/metrics``.

The cost when nothing waits is one indexed read, and none at all when nothing was freed; a
pass looks at most ``limit`` sessions, O(sessions waiting) with the calendar built once.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from uuid import UUID

from execbroker.clock import Clock
from execbroker.lifecycle.changes import SessionChanges
from execbroker.lifecycle.freed import Cause, FreedCapacity, describe
from execbroker.metrics import BACKFILL_GAINED, BACKFILL_MOVES, BACKFILL_SCANS
from execbroker.model.isotime import format_duration, format_instant
from execbroker.model.messages import make_message
from execbroker.model.phases import MessageLevel
from execbroker.model.wire import MessageItem
from execbroker.planning.backfill import earliest_start, move
from execbroker.planning.calendar import Usage
from execbroker.planning.profile import PlatformProfile
from execbroker.platforms.base import Platform
from execbroker.services import admission
from execbroker.storage.booking import Booking
from execbroker.storage.store import BrokerStore

__all__ = ["MOVED", "BackfillService"]

logger = logging.getLogger(__name__)

MOVED = "Moved earlier from {from} to {to} ({gained} sooner): capacity freed by {freed}"


class BackfillService:
    """Moves waiting sessions earlier into freed capacity; :meth:`run_pass` after each
    engine pass.
    """

    def __init__(
        self,
        *,
        store: BrokerStore,
        profile: PlatformProfile,
        platform: Platform,
        clock: Clock,
        changes: SessionChanges,
        freed: FreedCapacity,
        limit: int = 1000,
    ) -> None:
        self._store = store
        self._profile = profile
        self._platform = platform
        self._clock = clock
        self._changes = changes
        self._freed = freed
        self._limit = limit

    async def run_pass(self) -> int:
        """Move what can move, if anything freed capacity since the last pass; how many
        sessions moved.
        """
        if not self._freed.pending():
            return 0
        causes = self._freed.take()
        try:
            moved = await self._run(causes)
        except BaseException:
            self._freed.give_back(causes)  # looked at again on the next pass
            raise
        for uuid, gained in moved:
            BACKFILL_MOVES.inc()
            BACKFILL_GAINED.observe(gained.total_seconds())
            self._changes.changed(uuid)
        if moved:
            # Each left a later slot free: a session accepted before it may fit there now.
            self._freed.freed(Cause.MOVED, len(moved))
            logger.info("sessions moved earlier", extra={"count": len(moved)})
        return len(moved)

    async def _run(self, causes: Counter[Cause]) -> list[tuple[UUID, timedelta]]:
        if not await self._store.calendar.any_waiting_to_move(now=self._clock.now()):
            BACKFILL_SCANS.labels("none").inc()
            return []
        BACKFILL_SCANS.labels("looked").inc()
        freed_by = describe(causes)
        return await self._store.calendar.book(
            lambda booking: self._move(booking, freed_by), optimistic=False
        )

    def _move(self, booking: Booking, freed_by: str) -> list[tuple[UUID, timedelta]]:
        """Inside the locked booking: each waiting session, first accepted first, to its
        earliest start against the calendar as the moves before it left it.
        """
        now = booking.now()
        waiting = booking.waiting_to_move(now=now, limit=self._limit)
        if not waiting:
            return []
        horizon = max(w.book_end for w in waiting)
        # Every booking's interactive sessions counted together: with per-user accounts
        # this over-counts another account's, which can only keep a notebook from moving.
        usage = Usage(booking.holds(now, horizon, now=now))
        limits = self._platform.limits()
        moved: list[tuple[UUID, timedelta]] = []
        for session in waiting:
            bounds = admission.bounds_for(
                self._profile.capacity, limits, interactive=session.amounts.interactive > 0
            )
            start = earliest_start(
                session, usage, capacity=bounds.capacity, now=now, free_now=bounds.free_now
            )
            if start is None:
                continue
            gained = session.available_start - start
            note = _moved_note(session.available_start, start, gained, freed_by, now=now)
            if booking.move_earlier(session, start=start, now=now, note=note):
                move(session, start, usage)
                moved.append((session.uuid, gained))
        return moved


def _moved_note(
    before: datetime, after: datetime, gained: timedelta, freed_by: str, *, now: datetime
) -> MessageItem:
    return make_message(
        MessageLevel.INFO,
        MOVED,
        {
            "from": format_instant(before),
            "to": format_instant(after),
            "gained": format_duration(gained),
            "seconds": int(gained.total_seconds()),
            "freed": freed_by,
        },
        time=now,
    )
