"""Learned estimates: how long preparing steps really took, and what the planner plans with.

Each time a component becomes available, the engine records how long it took from its
preparing start, under an :class:`EstimateKey`: the platform, the component's role, and what
decides its time there (the executable's kind and image, for the executable and the compute;
the storage's kind for a storage). The planner plans a step with a high percentile
(``estimate_percentile``) of the last ``estimate_window`` observations of its key, once there
are at least ``estimate_min_observations``; else with the configured defaults. Data is not
learned: its staging time follows its size, which is planned from the staging speed.

:class:`EstimateBook` holds the recent observations in memory, so that planning never waits
for the database: it is loaded at start and refreshed from the database each time this
process records an observation (so it also picks up what other replicas recorded under the
same key).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from execbroker.model import kinds
from execbroker.model.estimates import EstimateKey
from execbroker.model.isotime import format_duration
from execbroker.model.messages import info
from execbroker.model.records import ComponentRole
from execbroker.model.wire import MessageItem

__all__ = ["EstimateBook", "Learned", "learned_note", "nearest_rank"]


@dataclass(frozen=True)
class Learned:
    """An estimate learned from history: the percentile of the last ``observations``."""

    estimate: timedelta
    percentile: int
    observations: int


def nearest_rank(values: Sequence[float], percentile: int) -> float:
    """The ``percentile``-th percentile of ``values`` by nearest rank: an observed value that
    at least that share of the observations do not exceed.
    """
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


class EstimateBook:
    """The recent preparing times by key, in memory, and the estimates they give.

    Thread-safe: the planner reads it from request handlers while the engine updates it.
    """

    def __init__(self, *, percentile: int = 90, window: int = 50, minimum: int = 5) -> None:
        self.percentile = percentile
        self.window = window
        self.minimum = minimum
        self._lock = threading.Lock()
        self._recent: dict[EstimateKey, tuple[float, ...]] = {}
        self._learned: dict[EstimateKey, Learned] = {}

    def load(self, history: Mapping[EstimateKey, Sequence[float]]) -> None:
        """Replace what is known by ``history``: each key's durations, oldest first."""
        with self._lock:
            self._recent.clear()
            self._learned.clear()
        for key, durations in history.items():
            self.update(key, durations)

    def update(self, key: EstimateKey, durations: Sequence[float]) -> None:
        """Set ``key``'s recent durations (seconds, oldest first; the last ``window`` count)."""
        recent = tuple(durations[-self.window :])
        learned = None
        if len(recent) >= self.minimum:
            learned = Learned(
                timedelta(seconds=nearest_rank(recent, self.percentile)),
                self.percentile,
                len(recent),
            )
        with self._lock:
            self._recent[key] = recent
            if learned is None:
                self._learned.pop(key, None)
            else:
                self._learned[key] = learned

    def learned(self, key: EstimateKey) -> Learned | None:
        """The estimate learned for ``key``, or None while it has too few observations."""
        with self._lock:
            return self._learned.get(key)

    def counts(self) -> dict[EstimateKey, int]:
        """How many recent observations each key has."""
        with self._lock:
            return {key: len(recent) for key, recent in self._recent.items()}

    def estimates(self) -> dict[EstimateKey, Learned]:
        """Every learned estimate."""
        with self._lock:
            return dict(self._learned)


_STEP = {
    ComponentRole.COMPUTE: "start",
    ComponentRole.EXECUTABLE: "preparation",
    ComponentRole.STORAGE: "preparation",
}


def learned_note(key: EstimateKey, learned: Learned) -> MessageItem:
    """What an offer says of a step planned from history, e.g. "compute start estimated from
    the last 50 starts of this image: p90 PT2M10S".
    """
    step = _STEP.get(key.role, "preparation")
    plural = "starts" if step == "start" else "preparations"
    of = f"of the image '{key.image}'" if key.image else f"of a {kinds.short_kind(key.kind)}"
    return info(
        "{role} {step} estimated from the last {count} {plural} {of}: p{percentile} {estimate}",
        role=key.role.value,
        step=step,
        count=learned.observations,
        plural=plural,
        of=of,
        percentile=learned.percentile,
        estimate=format_duration(learned.estimate),
    )
