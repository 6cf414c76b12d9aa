"""Learned estimates kept up to date: loaded from the database at start, and refreshed each
time the engine records how long a step took (see :mod:`execbroker.planning.estimates`).
"""

from __future__ import annotations

from execbroker.metrics import PREPARING_ESTIMATE, PREPARING_TIMES
from execbroker.model import kinds
from execbroker.model.estimates import Observation
from execbroker.planning.estimates import EstimateBook
from execbroker.storage.estimates import PreparingTimes

__all__ = ["EstimateRecorder"]

# Keys shown in /metrics with their image: the most observed ones, so that the label's
# values stay few however many images users run.
_SHOWN = 20


class EstimateRecorder:
    """Records observed preparing times in the database and keeps ``book`` in step with it."""

    def __init__(self, times: PreparingTimes, book: EstimateBook) -> None:
        self._times = times
        self.book = book

    async def load(self) -> None:
        """Read the recent history of every key (at start)."""
        self.book.load(await self._times.history(window=self.book.window))
        self._publish()

    async def record(self, observations: list[Observation]) -> None:
        """Keep ``observations``, and plan with what the database now holds of their keys."""
        for seen in observations:
            PREPARING_TIMES.labels(
                seen.key.platform, seen.key.role.value, kinds.short_kind(seen.key.kind)
            ).observe(seen.seconds)
        recent = await self._times.record(observations, window=self.book.window)
        for key, durations in recent.items():
            self.book.update(key, durations)
        self._publish()

    def _publish(self) -> None:
        """The current estimates of the most observed keys, as a gauge."""
        counts = self.book.counts()
        shown = sorted(self.book.estimates().items(), key=lambda item: -counts[item[0]])
        PREPARING_ESTIMATE.clear()
        for key, learned in shown[:_SHOWN]:
            PREPARING_ESTIMATE.labels(
                key.platform, key.role.value, kinds.short_kind(key.kind), key.image
            ).set(learned.estimate.total_seconds())
