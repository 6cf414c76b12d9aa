"""The timer that marks unaccepted offers EXPIRED, whether or not anyone reads them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from execbroker.clock import Clock
from execbroker.lifecycle.background import BackgroundLoop
from execbroker.services.sessions import SessionService
from execbroker.storage.store import BrokerStore

__all__ = ["ExpiryTimer"]

logger = logging.getLogger(__name__)

_MIN_PAUSE = 0.01


class ExpiryTimer(BackgroundLoop):
    """Sleeps until the next offer's ``expires`` (at most ``interval`` seconds), then expires.

    The state lives in the database (each offer's ``expires``), so a restart loses nothing:
    the first pass after start-up expires everything that fell due while the broker was down.
    """

    name = "execbroker-expiry"

    def __init__(
        self, *, sessions: SessionService, store: BrokerStore, clock: Clock, interval: float
    ) -> None:
        super().__init__()
        self._sessions = sessions
        self._store = store
        self._clock = clock
        self._interval = interval
        self._next_pass: datetime | None = None

    def notice(self, expires: datetime) -> None:
        """New offers expire at ``expires``: wake early if that is before the next pass."""
        if self._next_pass is None or expires < self._next_pass:
            self._next_pass = expires
            self._wake.set()

    async def _run(self) -> None:
        while True:
            # Clear first: a notice that arrives during this pass (which may read the
            # database before that offer is committed) must wake the wait below at once.
            self._next_pass = None
            self._wake.clear()
            pause = self._interval
            try:
                await self._sessions.expire_due_offers()
                upcoming = await self._store.offers.next_expiry()
                if upcoming is not None:
                    until = (upcoming - self._clock.now()) / timedelta(seconds=1)
                    pause = min(self._interval, max(until, _MIN_PAUSE))
            except Exception:
                logger.exception("expiry pass failed; trying again")
            self._next_pass = self._clock.now() + timedelta(seconds=pause)
            await self._sleep(pause)
