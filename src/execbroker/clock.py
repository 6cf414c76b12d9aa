"""Time comes from a clock object, so that tests can drive it instead of sleeping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Where the broker reads the time: :class:`SystemClock` in production, a manual clock in
    tests.
    """

    def now(self) -> datetime:
        """The current time, aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to: for tests, the fakes and benches.

    It is also callable (``clock()`` is ``clock.now()``), for code that takes a plain
    ``Callable[[], datetime]`` such as the fake Skaha. Safe to read and move from several
    threads (a fake served in a thread reads it while the test moves it).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = start or datetime(2026, 8, 6, 12, 0, tzinfo=UTC)
        self._after_read = timedelta(0)

    def now(self) -> datetime:
        with self._lock:
            now = self._now
            self._now += self._after_read
            self._after_read = timedelta(0)
            return now

    def __call__(self) -> datetime:
        return self.now()

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forwards or back)."""
        with self._lock:
            self._now = when

    def advance(self, by: timedelta | float) -> datetime:
        """Move forward by ``by`` (a ``timedelta``, or seconds) and return the new time."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        with self._lock:
            self._now += step
            return self._now

    def advance_after_next_read(self, by: timedelta) -> None:
        """Time passes just after the next look at the clock (between a check and a lock)."""
        with self._lock:
            self._after_read = by
