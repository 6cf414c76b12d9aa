"""A request the broker can serve: what validation makes of a request, and what the
planner and every platform read.

It lives in the model, below planning and the platforms, because both read it: planning
makes it (:func:`~execbroker.planning.validation.validate_request`) and books it, and each
platform's ``shape`` says what of it the platform can run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from execbroker.model.isotime import Interval
from execbroker.model.records import ComponentRole
from execbroker.model.wire import MessageItem

__all__ = ["Limit", "Plan", "PlannedComponent", "Range"]


@dataclass(frozen=True)
class Range:
    """An amount the request allows, between ``min`` and ``max`` inclusive."""

    min: int
    max: int


@dataclass
class PlannedComponent:
    """One component of a validated request: its role, name, kind and wire fields, and what it
    needs.

    ``size`` is a storage's size, ``storage`` names a data resource's storage, ``resource``
    what a volume mounts; ``notes`` are the messages validation had about it.
    """

    role: ComponentRole
    name: str
    kind: str
    # The component's own wire fields, without meta, phase or schedule.
    spec: dict[str, Any]
    description: str | None = None
    client_uuid: str | None = None
    size: Range | None = None  # storage only
    storage: str | None = None  # data only: the name of its storage
    size_bytes: int | None = None  # data only: the declared size, if any
    resource: str | None = None  # volume only: the name of what it mounts
    notes: list[MessageItem] = field(default_factory=list)


@dataclass(frozen=True)
class Limit:
    """A bound the request puts on a cost (``max``) or a metric (``min``), by its type URI."""

    path: str
    type: str
    value: float


@dataclass
class Plan:
    """A request the broker can serve, with every default filled in and every name resolved."""

    executable: PlannedComponent
    compute: PlannedComponent
    cores: Range
    memory: Range
    storage: list[PlannedComponent]
    data: list[PlannedComponent]
    volumes: list[PlannedComponent]
    duration: timedelta
    window: Interval
    notes: list[MessageItem]
    cost_limits: list[Limit] = field(default_factory=list)
    metric_minimums: list[Limit] = field(default_factory=list)
    # The request's x-start-early: whether it may move earlier once accepted (None: not
    # said; the broker decides by the kind of request).
    start_early: bool | None = None

    @property
    def storage_min(self) -> int:
        return sum(s.size.min for s in self.storage if s.size)

    @property
    def storage_max(self) -> int:
        return sum(s.size.max for s in self.storage if s.size)
