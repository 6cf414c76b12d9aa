"""The retention job: deletes ended sessions and offer sets once they are old enough.

Every ``interval`` seconds (the background manager repeats :meth:`RetentionJob.run_pass`)
it deletes what ended (and did not change) more than ``keep`` ago, in short batches (see
:mod:`execbroker.storage.retention`), and counts what it deleted in
``execbroker_retention_deleted_total``. Several brokers sharing a database may all run it:
a record deleted by one is simply not found by the others.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from execbroker.clock import Clock
from execbroker.metrics import RETENTION_DELETED
from execbroker.storage.database import Database
from execbroker.storage.retention import Purged, purge_ended

__all__ = ["RetentionJob"]

logger = logging.getLogger(__name__)


class RetentionJob:
    """Deletes ended records older than ``keep``, every ``interval`` seconds."""

    def __init__(
        self, *, database: Database, clock: Clock, keep: timedelta, interval: float
    ) -> None:
        self.interval = interval
        self._database = database
        self._clock = clock
        self._keep = keep

    async def run_once(self) -> Purged:
        """One pass: delete what ended more than ``keep`` ago; what it deleted."""
        purged = await purge_ended(self._database, before=self._clock.now() - self._keep)
        RETENTION_DELETED.labels("offer_set").inc(purged.offer_sets)
        RETENTION_DELETED.labels("session").inc(purged.sessions)
        if purged.offer_sets or purged.sessions:
            logger.info(
                "retention deleted ended records",
                extra={"offer_sets": purged.offer_sets, "sessions": purged.sessions},
            )
        return purged

    async def run_pass(self) -> float:
        """One pass of the background loop; seconds until the next."""
        await self.run_once()
        return self.interval
