"""Offers side by side: what each one gives, and which is best.

An offer is an execution session in phase ``OFFERED``; :class:`OfferSummary` pulls out what
a person compares — when it starts, for how long, how many cores, how much memory and
storage, what it costs, when the offer expires — from the v1.0 document.

"Best" (:func:`best_offer`, ``--accept best``) is the earliest start; at the same start the
most cores, then the most memory, then the longest run, then the lowest monetary cost. An
offer that is no longer ``OFFERED`` (accepted, rejected, expired) is never best.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from execbroker.model.isotime import parse_duration, parse_instant, parse_interval
from execbroker.model.phases import SessionPhase
from execbroker.model.wire import ExecutionSession, LifecycleSchedule, OfferSetResponse

__all__ = [
    "MONETARY",
    "OfferSummary",
    "available_window",
    "best_offer",
    "pick_offer",
    "summarise_offers",
]

MONETARY = "urn:ivoa:calycopis:cost:monetary"


@dataclass(frozen=True)
class OfferSummary:
    """What one offer gives. ``index`` is its place in the offer set, from 1."""

    index: int
    uuid: UUID
    phase: SessionPhase
    start: datetime | None
    duration: timedelta | None
    cores: int | None
    memory_gib: int | None
    storage_gib: int | None
    expires: datetime | None
    costs: dict[str, float] = field(default_factory=dict)
    session: ExecutionSession | None = field(default=None, repr=False, compare=False)

    @property
    def cost(self) -> float | None:
        """The monetary cost quoted, if any."""
        return self.costs.get(MONETARY)

    @property
    def end(self) -> datetime | None:
        if self.start is None or self.duration is None:
            return None
        return self.start + self.duration


def available_window(
    schedule: LifecycleSchedule | None,
) -> tuple[datetime | None, timedelta | None]:
    """The start and duration of a schedule's ``available`` step, where they can be read.

    ``available.start`` is an interval (``…Z/PT0S``) in the v1.0 schema; a plain instant is
    read too.
    """
    if schedule is None or schedule.available is None:
        return None, None
    start: datetime | None = None
    duration: timedelta | None = None
    text = schedule.available.start
    if text:
        with contextlib.suppress(ValueError):
            start = parse_interval(text).start if "/" in text else parse_instant(text)
    if schedule.available.duration:
        with contextlib.suppress(ValueError):
            duration = parse_duration(schedule.available.duration)
    return start, duration


def _amount(resource: Any, name: str) -> int | None:
    pair = getattr(resource, name, None) if resource is not None else None
    if pair is None:
        return None
    value = pair.min if pair.min is not None else pair.max
    return int(value) if value is not None else None


def summarise(offer: ExecutionSession, index: int) -> OfferSummary:
    """One offer's summary."""
    start, duration = available_window(offer.schedule)
    sizes = [_amount(storage, "size") for storage in offer.storage or []]
    costs: dict[str, float] = {}
    for item in offer.costs or []:
        value = getattr(item, "min", None)
        if item.type and value is not None:
            costs[item.type] = float(value)
    if offer.meta is None or offer.meta.uuid is None:
        raise ValueError(f"offer {index} has no meta.uuid")
    return OfferSummary(
        index=index,
        uuid=offer.meta.uuid,
        phase=offer.phase,
        start=start,
        duration=duration,
        cores=_amount(offer.compute, "cores"),
        memory_gib=_amount(offer.compute, "memory"),
        storage_gib=sum(s for s in sizes if s is not None) if any(sizes) else None,
        expires=offer.expires,
        costs=costs,
        session=offer,
    )


def summarise_offers(offers: OfferSetResponse | Sequence[ExecutionSession]) -> list[OfferSummary]:
    """Every offer's summary, in the offer set's order (``index`` 1, 2, …)."""
    found = offers.offers if isinstance(offers, OfferSetResponse) else offers
    return [summarise(offer, number) for number, offer in enumerate(found, start=1)]


def _preference(offer: OfferSummary) -> tuple[Any, ...]:
    return (
        offer.start is None,
        offer.start,
        -(offer.cores or 0),
        -(offer.memory_gib or 0),
        -(offer.duration or timedelta(0)),
        offer.cost if offer.cost is not None else float("inf"),
        offer.index,
    )


def best_offer(
    offers: OfferSetResponse | Sequence[ExecutionSession] | Sequence[OfferSummary],
    *,
    key: Callable[[OfferSummary], Any] | None = None,
) -> OfferSummary:
    """The best offer still open (see the module's docstring), or the smallest by ``key``.

    ValueError when no offer is still ``OFFERED``.
    """
    summaries = _summaries(offers)
    open_offers = [o for o in summaries if o.phase is SessionPhase.OFFERED]
    if not open_offers:
        raise ValueError("no offer is still open (OFFERED)")
    return min(open_offers, key=key or _preference)


def pick_offer(
    offers: OfferSetResponse | Sequence[ExecutionSession] | Sequence[OfferSummary], choice: str
) -> OfferSummary:
    """The offer ``choice`` names: ``best``, or its number in the offer set (from 1)."""
    summaries = _summaries(offers)
    if choice.strip().lower() == "best":
        return best_offer(summaries)
    try:
        number = int(choice)
    except ValueError:
        raise ValueError(f"choose an offer with 'best' or its number, not {choice!r}") from None
    if not 1 <= number <= len(summaries):
        raise ValueError(f"there are {len(summaries)} offer(s); {number} is not one of them")
    return summaries[number - 1]


def _summaries(
    offers: OfferSetResponse | Sequence[ExecutionSession] | Sequence[OfferSummary],
) -> list[OfferSummary]:
    if isinstance(offers, OfferSetResponse):
        return summarise_offers(offers)
    items = list(offers)
    if all(isinstance(item, OfferSummary) for item in items):
        return [item for item in items if isinstance(item, OfferSummary)]
    return summarise_offers([item for item in items if isinstance(item, ExecutionSession)])
