"""The request's own limits on offers: most it will pay, least performance it needs."""

from __future__ import annotations

from execbroker.model.messages import make_message
from execbroker.model.phases import MessageLevel
from execbroker.model.plan import Plan
from execbroker.planning.offers import (
    METRIC_IO_THROUGHPUT,
    METRIC_PERFORMANCE,
    Offer,
    OfferSearch,
    costs_of,
)
from execbroker.planning.profile import PlatformProfile

__all__ = ["apply_limits"]


def _costs(plan: Plan, offer: Offer, profile: PlatformProfile) -> dict[str, float]:
    return costs_of(
        profile,
        cores=offer.cores,
        memory_gib=offer.memory_gib,
        storage_gib=sum(offer.storage_gib.values()),
        duration=plan.duration,
    )


def apply_limits(search: OfferSearch, plan: Plan, profile: PlatformProfile) -> OfferSearch:
    """Drop offers that break a cost limit or a metric minimum; say why when none is left."""
    if not search.offers or not (plan.cost_limits or plan.metric_minimums):
        return search
    problems = []
    promised = {
        METRIC_PERFORMANCE: profile.compute_performance[0],
        METRIC_IO_THROUGHPUT: profile.io_throughput[0],
    }
    for minimum in plan.metric_minimums:
        # The lowest figure is the one every offer is sure to meet.
        value = promised.get(minimum.type)
        if value is not None and value < minimum.value:
            problems.append(
                make_message(
                    MessageLevel.ERROR,
                    "{path}: the platform's {type} is {value}, below the minimum {minimum}",
                    {
                        "path": minimum.path,
                        "type": minimum.type,
                        "value": value,
                        "minimum": minimum.value,
                    },
                )
            )
    if problems:
        return OfferSearch([], problems)
    kept = [
        offer
        for offer in search.offers
        if all(
            _costs(plan, offer, profile).get(limit.type, 0.0) <= limit.value
            for limit in plan.cost_limits
        )
    ]
    if kept:
        return OfferSearch(kept, search.problems)
    for limit in plan.cost_limits:
        cheapest = min(_costs(plan, o, profile).get(limit.type, 0.0) for o in search.offers)
        if cheapest > limit.value:
            problems.append(
                make_message(
                    MessageLevel.ERROR,
                    "{path}: every offer costs more than the limit of {limit} for {type}; "
                    "the cheapest costs {cheapest}",
                    {
                        "path": limit.path,
                        "limit": limit.value,
                        "type": limit.type,
                        "cheapest": cheapest,
                    },
                )
            )
    if not problems:
        problems.append(
            make_message(
                MessageLevel.ERROR,
                "{path}: no offer is within every cost limit at once",
                {"path": "/costs"},
            )
        )
    return OfferSearch([], problems)
