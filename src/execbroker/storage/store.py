"""The broker's storage, as the services and the engine receive it: one object made of a
store per aggregate.

- :attr:`BrokerStore.calendar` (:mod:`~execbroker.storage.booking`): booking work run
  against the pool's capacity, and advisory reads of what is held;
- :attr:`BrokerStore.offers` (:mod:`~execbroker.storage.offers`): offer sets, rejecting
  and expiring offers;
- :attr:`BrokerStore.sessions` (:mod:`~execbroker.storage.sessions`): sessions and
  components, a user's cancel;
- :attr:`BrokerStore.claims` (:mod:`~execbroker.storage.claims`): the engine's claims and
  the steps it writes back.

Storage is mechanical: records in, records out, facts (counts, totals) for the services to
decide on. The SQL lives in :mod:`~execbroker.storage.queries` (the calendar and the
quotas) and :mod:`~execbroker.storage.rows` (records to rows and back).
"""

from __future__ import annotations

from datetime import timedelta

from execbroker.clock import Clock
from execbroker.storage.booking import Calendar
from execbroker.storage.claims import ClaimStore
from execbroker.storage.database import Database
from execbroker.storage.offers import OfferStore
from execbroker.storage.sessions import SessionStore

__all__ = ["BrokerStore"]


class BrokerStore:
    """Every store of one database and pool."""

    def __init__(
        self,
        database: Database,
        *,
        pool: str = "mock",
        longest_booking: timedelta = timedelta(days=8),
        clock: Clock | None = None,
        lock_timeout: float = 5,
    ) -> None:
        """``pool``, ``longest_booking``, ``clock`` and ``lock_timeout``: the calendar's
        (:class:`~execbroker.storage.booking.Calendar`).
        """
        self.calendar = Calendar(
            database,
            pool=pool,
            longest_booking=longest_booking,
            clock=clock,
            lock_timeout=lock_timeout,
        )
        self.offers = OfferStore(database)
        self.sessions = SessionStore(database)
        self.claims = ClaimStore(database)
