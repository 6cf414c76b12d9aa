"""The timer that marks unaccepted offers EXPIRED, whether or not anyone reads them."""

from __future__ import annotations

from datetime import datetime, timedelta

from execbroker.background import Wake
from execbroker.clock import Clock
from execbroker.services.sessions import SessionService
from execbroker.storage.store import BrokerStore

__all__ = ["ExpiryTimer"]

_MIN_PAUSE = 0.01


class ExpiryTimer:
    """Sleeps until the next offer's ``expires`` (at most ``interval`` seconds), then expires.

    The background manager repeats :meth:`run_pass`; :meth:`notice` wakes it early. The
    state lives in the database (each offer's ``expires``), so a restart loses nothing: the
    first pass after start-up expires everything that fell due while the broker was down.
    """

    def __init__(
        self, *, sessions: SessionService, store: BrokerStore, clock: Clock, interval: float
    ) -> None:
        self.wake = Wake()
        self.interval = interval
        self._sessions = sessions
        self._store = store
        self._clock = clock
        self._next_pass: datetime | None = None

    def notice(self, expires: datetime) -> None:
        """New offers expire at ``expires``: wake early if that is before the next pass."""
        if self._next_pass is None or expires < self._next_pass:
            self._next_pass = expires
            self.wake.set()

    async def run_pass(self) -> float:
        """Expire what is due; seconds until the next offer expires (at most ``interval``)."""
        # Forget the next pass first: a notice that arrives during this pass (which may
        # read the database before that offer is committed) must wake the pause at once.
        self._next_pass = None
        pause = self.interval
        await self._sessions.expire_due_offers()
        upcoming = await self._store.offers.next_expiry()
        if upcoming is not None:
            until = (upcoming - self._clock.now()) / timedelta(seconds=1)
            pause = min(self.interval, max(until, _MIN_PAUSE))
        self._next_pass = self._clock.now() + timedelta(seconds=pause)
        return pause
