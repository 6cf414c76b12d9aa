"""Offers that were not accepted in time: marked EXPIRED by a timer, whether or not anyone
reads them, and at once when someone tries to accept one too late.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from uuid import UUID

from execbroker.background import Wake
from execbroker.clock import Clock
from execbroker.lifecycle.changes import SessionChanges
from execbroker.lifecycle.freed import Cause
from execbroker.metrics import OFFERS
from execbroker.model.isotime import format_instant
from execbroker.model.messages import info
from execbroker.storage.store import BrokerStore

__all__ = ["ExpiryTimer"]

logger = logging.getLogger(__name__)

_MIN_PAUSE = 0.01


class ExpiryTimer:
    """Sleeps until the next offer's ``expires`` (at most ``interval`` seconds), then expires.

    The background manager repeats :meth:`run_pass`; :meth:`notice` wakes it early. The
    state lives in the database (each offer's ``expires``), so a restart loses nothing: the
    first pass after start-up expires everything that fell due while the broker was down.
    """

    def __init__(
        self, *, store: BrokerStore, clock: Clock, changes: SessionChanges, interval: float
    ) -> None:
        self.wake = Wake()
        self.interval = interval
        self._store = store
        self._clock = clock
        self._changes = changes
        self._next_pass: datetime | None = None

    def notice(self, expires: datetime) -> None:
        """New offers expire at ``expires``: wake early if that is before the next pass."""
        if self._next_pass is None or expires < self._next_pass:
            self._next_pass = expires
            self.wake.set()

    async def expire_due_offers(self) -> list[UUID]:
        """Mark every offer whose time is up EXPIRED; the offers it marked."""
        now = self._clock.now()
        expired = await self._store.offers.expire(
            now=now,
            note=lambda expires: info(
                "Offer expired at {expires} without being accepted",
                time=now,
                expires=format_instant(expires),
            ),
        )
        for uuid in expired:
            self._changes.changed(uuid)  # wakes whoever waits on the offer
        if expired:
            self._changes.freed(Cause.EXPIRED, len(expired))
            OFFERS.labels("expired").inc(len(expired))
            logger.info("offers expired", extra={"count": len(expired)})
        return expired

    async def run_pass(self) -> float:
        """Expire what is due; seconds until the next offer expires (at most ``interval``)."""
        # Forget the next pass first: a notice that arrives during this pass (which may
        # read the database before that offer is committed) must wake the pause at once.
        self._next_pass = None
        pause = self.interval
        await self.expire_due_offers()
        upcoming = await self._store.offers.next_expiry()
        if upcoming is not None:
            until = (upcoming - self._clock.now()) / timedelta(seconds=1)
            pause = min(self.interval, max(until, _MIN_PAUSE))
        self._next_pass = self._clock.now() + timedelta(seconds=pause)
        return pause
