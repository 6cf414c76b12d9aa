"""The planner's advice, in numbers: why an offer starts later than its request allowed, and
what would fit when nothing does.

Both are worked out once, from the calendar the search used, when the request is planned,
and stored as messages with ``values`` on the offer (and the session it becomes) or the
``NO``: nothing is computed again when they are read.

Their ``values`` name what they are about, so that a client can show them without parsing
the text:

- why a session waits: ``binding`` is the resource its start waits for (``cores``,
  ``memory``, ``storage``, ``interactive`` — the account's limit on interactive sessions —
  or ``platform``, what the platform shows free now), with ``start``, ``earliest`` (the
  earliest start the request allowed), ``wanted``, ``free``, ``held`` and ``holders`` (how
  many sessions accepted before it hold the resource then);
- what would fit: ``change`` is the one change that fits on its own (``cores``, ``memory``,
  ``storage``, ``duration``, ``start``), and the value under that same name is the number
  (``{"change": "cores", "cores": "4", "instead": "8"}``); ``change`` is ``none`` when no
  change of one thing fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from execbroker.model.capacity import Amounts
from execbroker.model.isotime import Interval, format_duration, format_instant
from execbroker.model.messages import info
from execbroker.model.plan import Plan
from execbroker.model.wire import MessageItem
from execbroker.planning.bounds import Bounds
from execbroker.planning.calendar import Usage

__all__ = ["LATER_HORIZON", "Calendar", "LaterCalendar", "what_would_fit", "why_it_waits"]

# How far past the requested start interval a NO looks for a later start that fits.
LATER_HORIZON = timedelta(days=7)

# A reader of the calendar over [start, end), for a later start than the search looked at.
LaterCalendar = Callable[[datetime, datetime], Usage]

# (name in messages, Amounts field, unit, request path) of the pool's resources.
_RESOURCES = (
    ("cores", "cores", "cores", "/compute/cores/min"),
    ("memory", "memory_gib", "GiB of memory", "/compute/memory/min"),
    ("storage", "storage_gib", "GiB of storage", "/storage"),
)


class Calendar(Protocol):
    """What advice reads of a search: its plan, bounds and calendar, and how it fits."""

    plan: Plan
    bounds: Bounds
    usage: Usage
    earliest: datetime
    latest: datetime
    lead: timedelta
    tail: timedelta

    def free_at(self, start: datetime) -> Amounts: ...

    def candidates(self, from_start: datetime) -> Iterator[datetime]: ...

    def earliest_fit(self, from_start: datetime, need: Amounts) -> datetime | None: ...

    def variant(self, plan: Plan, *, usage: Usage | None = None) -> Calendar:
        """The same search for ``plan`` (against ``usage``, default the same calendar)."""
        ...


# ---------------------------------------------------------------------- waits


def why_it_waits(
    search: Calendar, need: Amounts, start: datetime, *, now: datetime
) -> MessageItem | None:
    """Why an offer of ``need`` starts at ``start`` rather than at the earliest start the
    request allowed: the first resource short then, and who holds it. None when it starts
    as early as allowed.
    """
    earliest = search.earliest
    if start <= earliest:
        return None
    span = (earliest - search.lead, earliest + search.plan.duration + search.tail)
    held = search.usage.peak(*span)
    free = search.free_at(earliest)
    capacity = search.bounds.capacity
    values: dict[str, object] = {
        "start": format_instant(start),
        "earliest": format_instant(earliest),
    }
    fields = [*_RESOURCES, ("interactive", "interactive", "interactive sessions", "")]
    for binding, name, unit, _ in fields:
        wanted = getattr(need, name)
        if wanted <= getattr(free, name):
            continue
        values.update(binding=binding, wanted=wanted, free=max(getattr(free, name), 0), unit=unit)
        lead = (
            "Waits for its start at {start}: at {earliest}, the earliest start the request allows, "
        )
        if wanted <= getattr(capacity - held, name):
            # The calendar has room: what the platform shows free now has not.
            values["binding"] = "platform"
            return info(
                lead + "the platform shows {free} {unit} free, short of the {wanted} it needs",
                time=now,
                **values,
            )
        # Who holds it at the earliest start itself, if it is as short then as ever.
        at_earliest = search.usage.peak(earliest, earliest + timedelta(microseconds=1))
        if getattr(at_earliest, name) == getattr(held, name):
            busiest = earliest
        else:
            busiest = search.usage.busiest(*span, name)
        holders = search.usage.holders(busiest, name)
        offers = sum(1 for hold in holders if hold.offered)
        values.update(
            held=getattr(held, name),
            capacity=getattr(capacity, name),
            busiest=format_instant(busiest),
            holders=len(holders) - offers,
            offers=offers,
        )
        if name == "interactive" and search.bounds.limit is not None:
            limit = search.bounds.limit
            values.update(
                platform=limit.platform,
                limit=limit.most,
                held=limit.most - getattr(free, name),
            )
            template = (
                lead + "the account has {held} of the {limit} interactive sessions {platform} "
                "allows at once; {holders} session(s) accepted before it hold them at {busiest}"
            )
        else:
            template = (
                lead + "{free} of the {wanted} {unit} it needs are free; {held} of {capacity} "
                "are held at {busiest} by {holders} session(s) accepted before it"
            )
        if offers:
            template += " and {offers} unexpired offer set(s)"
        return info(template, time=now, **values)
    return None


# ---------------------------------------------------------------------- what would fit


def what_would_fit(
    search: Calendar, need: Amounts, *, later: LaterCalendar | None, now: datetime
) -> list[MessageItem]:
    """For a request of ``need`` that nothing fits: each change of one thing that would
    fit — fewer cores, less memory or storage, a shorter duration, a later start — with its
    number, worked out from the same calendar (and, for a later start, from ``later``'s
    reading of the calendar past the interval). Each is checked by planning the changed
    request against the calendar: applied as a new request, it gets offers.
    """
    plan = search.plan
    advice: list[MessageItem] = []
    if search.earliest <= search.latest:
        advice += _smaller_amounts(search, need, now=now)
        duration = _longest_duration(search, need)
        if duration is not None:
            advice.append(
                info(
                    "{path}: fits with {duration} instead of {instead}",
                    time=now,
                    path="/schedule/requested/duration",
                    change="duration",
                    duration=format_duration(duration),
                    instead=format_duration(plan.duration),
                )
            )
    start = _later_start(search, need, later) if later is not None else None
    if start is not None:
        advice.append(
            info(
                "{path}: fits from {start}, after the start interval asked for (it ends at "
                "{instead})",
                time=now,
                path="/schedule/requested/start",
                change="start",
                start=format_instant(start),
                instead=format_instant(plan.window.end),
            )
        )
    if not advice and later is not None:
        advice.append(
            info(
                "{path}: no change of one thing fits: not fewer cores, less memory or "
                "storage, a shorter run, nor a start within {horizon} after the interval",
                time=now,
                path="/",
                change="none",
                horizon=format_duration(LATER_HORIZON),
            )
        )
    return advice


def _smaller_amounts(search: Calendar, need: Amounts, *, now: datetime) -> list[MessageItem]:
    """The most of each resource that fits at some start, the others as asked."""
    best = {name: -1 for _, name, _, _ in _RESOURCES}
    for start in search.candidates(search.earliest):
        free = search.free_at(start)
        for _, name, _, _ in _RESOURCES:
            if getattr(free, name) > best[name] and replace(need, **{name: 0}).fits_within(free):
                best[name] = getattr(free, name)
    advice = []
    for change, name, unit, path in _RESOURCES:
        wanted, fits = getattr(need, name), best[name]
        if fits >= wanted or fits < (1 if name != "storage_gib" else 0):
            continue
        smaller = replace(need, **{name: fits})
        if search.earliest_fit(search.earliest, smaller) is None:  # pragma: no cover - exact
            continue
        advice.append(
            info(
                "{path}: fits with {" + change + "} {unit} instead of {instead}",
                time=now,
                path=path,
                change=change,
                unit=unit + (" in all" if name == "storage_gib" else ""),
                instead=wanted,
                **{change: fits},
            )
        )
    return advice


def _longest_duration(search: Calendar, need: Amounts) -> timedelta | None:
    """The longest run shorter than asked that fits at some start, on whole minutes (or
    seconds, under a minute); None when not even a second fits.
    """
    plan = search.plan
    capacity = search.bounds.capacity
    free_now = search.bounds.free_now
    longest = timedelta(0)
    for start in search.candidates(search.earliest):
        booked = start - search.lead
        capped = free_now is not None and booked < free_now.until
        if capped and free_now is not None and not need.fits_within(free_now.amounts):
            continue
        stop = search.usage.first_exceeding(
            booked, start + plan.duration + search.tail, extra=need, limit=capacity
        )
        if stop is None:  # the whole run fits: not a NO after all
            continue
        longest = max(longest, stop - search.tail - start)
    if longest >= timedelta(minutes=1):
        longest -= timedelta(seconds=longest.total_seconds() % 60)
    else:
        longest = timedelta(seconds=int(longest.total_seconds()))
    if longest < timedelta(seconds=1):
        return None
    shorter = search.variant(replace(plan, duration=longest))
    if shorter.earliest_fit(shorter.earliest, need) is None:  # pragma: no cover - exact
        return None
    return longest


def _later_start(search: Calendar, need: Amounts, later: LaterCalendar) -> datetime | None:
    """The earliest start after the requested interval (or, if that ends too soon to
    prepare, after now) at which the request fits, within :data:`LATER_HORIZON`.
    """
    plan = search.plan
    if search.earliest > search.latest:
        begin = search.earliest
    else:
        begin = search.latest.replace(microsecond=0) + timedelta(seconds=1)
    end = begin + LATER_HORIZON
    usage = later(begin - search.lead, end + plan.duration + search.tail)
    beyond = search.variant(replace(plan, window=Interval(begin, end)), usage=usage)
    return beyond.earliest_fit(beyond.earliest, need)
