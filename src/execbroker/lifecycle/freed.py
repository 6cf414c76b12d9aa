"""What freed capacity since the backfill last looked, and so whether it should look again.

Whoever frees capacity says so here: the engine (a session ended: completed, failed or
cancelled and released), the session service (a cancel, a reject, an accept's rejected
siblings), the expiry timer (offers expired), the backfill itself (a session that moved
earlier leaves its later slot free). At the end of each engine pass the backfill takes what
was noted (:meth:`FreedCapacity.take`) and, only if anything was, looks for sessions to move.

Per process: a broker looks after the capacity it freed itself, and its backfill moves any
broker's sessions (the calendar is shared). A broker that starts looks once, for what was
freed while it was down.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

__all__ = ["Cause", "FreedCapacity", "describe"]


class Cause(StrEnum):
    """What freed capacity."""

    ENDED_EARLY = "ended"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    MOVED = "moved"
    STARTED = "started"


# How each cause reads in a message, once and more than once.
_WORDS: dict[Cause, tuple[str, str]] = {
    Cause.ENDED_EARLY: ("a run that ended early", "{n} runs that ended early"),
    Cause.FAILED: ("a session that failed", "{n} sessions that failed"),
    Cause.CANCELLED: ("a cancelled session", "{n} cancelled sessions"),
    Cause.REJECTED: ("a rejected offer", "{n} rejected offers"),
    Cause.EXPIRED: ("an expired offer", "{n} expired offers"),
    Cause.MOVED: ("a session that moved earlier", "{n} sessions that moved earlier"),
    Cause.STARTED: ("sessions that ended while the broker was down",) * 2,
}


def describe(causes: Counter[Cause]) -> str:
    """``causes`` in words: "a run that ended early and 2 expired offers"."""
    parts = [
        (_WORDS[cause][0] if count == 1 else _WORDS[cause][1].format(n=count))
        for cause, count in sorted(causes.items(), key=lambda item: list(Cause).index(item[0]))
        if count > 0
    ]
    if not parts:
        return "sessions that ended"
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


class FreedCapacity:
    """Capacity freed since the last :meth:`take`, by cause (it starts with one: what may
    have been freed before this process started).
    """

    def __init__(self) -> None:
        self._causes: Counter[Cause] = Counter({Cause.STARTED: 1})
        # Every release noted since the process started, never taken: advice read from the
        # calendar before it changed (an extension room) is known stale.
        self.total = 0

    def freed(self, cause: Cause, count: int = 1) -> None:
        """``count`` bookings stopped holding, or held less, because of ``cause``."""
        if count > 0:
            self._causes[cause] += count
            self.total += count

    def pending(self) -> bool:
        """Whether anything was freed since the last :meth:`take`."""
        return bool(self._causes)

    def take(self) -> Counter[Cause]:
        """What was freed since the last time, forgotten here (empty: nothing)."""
        taken, self._causes = self._causes, Counter()
        return taken

    def give_back(self, causes: Counter[Cause]) -> None:
        """Note ``causes`` again (a backfill that failed tries again on the next pass)."""
        self._causes.update(causes)
