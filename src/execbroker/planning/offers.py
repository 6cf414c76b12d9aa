"""Offers: when a plan can run and with how much, against what the calendar already holds.

Alternatives, in the order they are returned (earliest start first; at the same start,
smaller before larger):

1. the earliest start in the requested interval at which the minimum amounts fit;
2. the same start with the largest amounts the pool allows there, up to the maximums;
3. later starts spread over the rest of the interval: for each target instant, the earliest
   feasible start at or after it, at the minimum amounts.

Each offer books ``[start - lead, start + duration + tail]``: the time to prepare before the
start, and to release after the end. Siblings are alternatives and are planned
independently; together they hold against every other request.

Besides the pool, a search books within its :class:`Bounds`: an account's limit on
interactive sessions (booked like a resource, so that a request past it gets a later start,
when earlier ones end, or ``NO`` naming the limit), and what the platform shows free now,
which caps every offer whose booking begins before that reading is renewed. Later starts
are planned against the pool alone: nothing says what the platform will have free then.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from execbroker.model import kinds
from execbroker.model.capacity import Amounts
from execbroker.model.estimates import EstimateKey, executable_image
from execbroker.model.isotime import format_duration, format_instant
from execbroker.model.messages import make_message
from execbroker.model.phases import ComponentPhase, MessageLevel, SessionPhase
from execbroker.model.plan import Plan, PlannedComponent
from execbroker.model.records import (
    ComponentRecord,
    ComponentRole,
    Refs,
    Schedule,
    SessionRecord,
)
from execbroker.model.wire import MessageItem
from execbroker.planning.advice import LaterCalendar, what_would_fit, why_it_waits
from execbroker.planning.bounds import AccountLimit, Bounds, FreeNow
from execbroker.planning.calendar import Usage
from execbroker.planning.estimates import learned_note
from execbroker.planning.profile import PlatformProfile, PreparingEstimate

__all__ = [
    "COST_CARBON",
    "COST_ENERGY",
    "COST_MONETARY",
    "METRIC_IO_THROUGHPUT",
    "METRIC_PERFORMANCE",
    "AccountLimit",
    "Bounds",
    "FreeNow",
    "Offer",
    "OfferSearch",
    "SessionTimes",
    "build_session",
    "component_costs",
    "costs_of",
    "generate_offers",
    "metric_documents",
    "summed_costs",
]

# AccountLimit, Bounds and FreeNow live in .bounds (advice reads them too); named here, where
# callers have always found them.

COST_MONETARY = "urn:ivoa:calycopis:cost:monetary"
COST_ENERGY = "urn:ivoa:calycopis:cost:energy"
COST_CARBON = "urn:ivoa:calycopis:cost:carbon"
METRIC_PERFORMANCE = "urn:ivoa:calycopis:metric:compute-performance"
METRIC_IO_THROUGHPUT = "urn:ivoa:calycopis:metric:io-throughput"


@dataclass(frozen=True)
class Offer:
    """One alternative: a start and the amounts offered (``interactive``: the account's
    interactive sessions it books, 0 or 1).
    """

    start: datetime
    cores: int
    memory_gib: int
    storage_gib: dict[str, int] = field(default_factory=dict)
    interactive: int = 0
    # What the session says of its start (why it is later than the request allowed).
    notes: tuple[MessageItem, ...] = field(default=(), compare=False)

    @property
    def amounts(self) -> Amounts:
        """What the offer books."""
        return Amounts(
            self.cores, self.memory_gib, sum(self.storage_gib.values()), self.interactive
        )


@dataclass(frozen=True)
class SessionTimes:
    """How long each step of a plan takes, as the planner schedules it."""

    compute_prepare: timedelta
    executable_prepare: timedelta
    storage_prepare: timedelta
    data_prepare: dict[str, timedelta]
    compute_release: timedelta
    executable_release: timedelta
    data_release: timedelta
    storage_release: timedelta
    # What the offer says of the steps planned from history (learned estimates).
    notes: tuple[MessageItem, ...] = ()

    @classmethod
    def of(cls, plan: Plan, profile: PlatformProfile) -> SessionTimes:
        base = profile.prepare_time(ComponentRole.DATA)
        data = {d.name: base + _staging_time(d.size_bytes, profile) for d in plan.data}
        executable = plan.executable
        image = executable_image(executable.kind, executable.spec)
        compute = profile.preparing(ComponentRole.COMPUTE, kind=executable.kind, image=image)
        prepared = profile.preparing(ComponentRole.EXECUTABLE, kind=executable.kind, image=image)
        storage = [profile.preparing(ComponentRole.STORAGE, kind=s.kind) for s in plan.storage]
        return cls(
            compute_prepare=compute.duration,
            executable_prepare=prepared.duration,
            storage_prepare=max((s.duration for s in storage), default=timedelta(0)),
            data_prepare=data,
            compute_release=profile.release_time(ComponentRole.COMPUTE),
            executable_release=profile.release_time(ComponentRole.EXECUTABLE),
            data_release=profile.release_time(ComponentRole.DATA) if plan.data else timedelta(0),
            storage_release=profile.release_time(ComponentRole.STORAGE)
            if plan.storage
            else timedelta(0),
            notes=_learned_notes(
                profile.name,
                [
                    (ComponentRole.COMPUTE, executable.kind, image, compute),
                    (ComponentRole.EXECUTABLE, executable.kind, image, prepared),
                    *(
                        (ComponentRole.STORAGE, s.kind, "", e)
                        for s, e in zip(plan.storage, storage, strict=True)
                    ),
                ],
            ),
        )

    @property
    def slowest_data(self) -> timedelta:
        return max(self.data_prepare.values(), default=timedelta(0))

    @property
    def lead(self) -> timedelta:
        """How long before its start a session begins preparing."""
        chain = self.compute_prepare + self.slowest_data + self.storage_prepare
        return max(self.compute_prepare + self.executable_prepare, chain)

    @property
    def tail(self) -> timedelta:
        """How long after its end a session is still being released."""
        after_compute = max(self.executable_release, self.data_release + self.storage_release)
        return self.compute_release + after_compute


def _learned_notes(
    platform: str, steps: Sequence[tuple[ComponentRole, str, str, PreparingEstimate]]
) -> tuple[MessageItem, ...]:
    """One message per step planned from history (once per key)."""
    keys = {
        EstimateKey(platform, role, kind, image): estimate.learned
        for role, kind, image, estimate in steps
        if estimate.learned is not None
    }
    return tuple(learned_note(key, learned) for key, learned in keys.items())


# Staging times are capped here: far longer than any broker plans for (the planner refuses
# them by name), and short enough that sums of a few of them stay within timedelta's range.
_LONGEST_STAGING = timedelta(days=36_500)


def _staging_time(size_bytes: int | None, profile: PlatformProfile) -> timedelta:
    """How long staging ``size_bytes`` takes; sizes are whole numbers of at most 2^63 - 1."""
    try:
        seconds = (size_bytes or 0) / profile.staging_bytes_per_second
    except OverflowError:  # more bytes than a float holds
        return _LONGEST_STAGING
    if seconds >= _LONGEST_STAGING.total_seconds():
        return _LONGEST_STAGING
    return timedelta(seconds=max(0.0, seconds))


@dataclass
class OfferSearch:
    """The outcome of a search: offers, or the messages saying why there are none."""

    offers: list[Offer]
    problems: list[MessageItem] = field(default_factory=list)


def _ceil_second(moment: datetime) -> datetime:
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


class _Search:
    def __init__(
        self, plan: Plan, *, profile: PlatformProfile, bounds: Bounds, usage: Usage, now: datetime
    ) -> None:
        self.plan = plan
        self.profile = profile
        self.now = now
        self.bounds = bounds
        self.capacity = bounds.capacity
        self.usage = usage
        times = SessionTimes.of(plan, profile)
        self.lead = times.lead
        self.tail = times.tail
        # Offers start on whole seconds, except when the interval is too narrow for one: a
        # start interval of [12:00:00.5, 12:00:00.5] is met at 12:00:00.5, not refused.
        earliest = max(plan.window.start, now + self.lead)
        rounded = _ceil_second(earliest)
        self.earliest = rounded if rounded <= plan.window.end else earliest
        self.latest = plan.window.end

    def free_at(self, start: datetime) -> Amounts:
        held = self.usage.peak(start - self.lead, start + self.plan.duration + self.tail)
        free = self.capacity - held
        now = self.bounds.free_now
        if now is not None and start - self.lead < now.until:
            free = free.floor(now.amounts)
        return free

    def candidates(self, from_start: datetime) -> Iterator[datetime]:
        """Starts worth trying from ``from_start`` on: it, then each time something is freed
        (a hold ends, or the platform's reading of what is free stops standing for "now").
        """
        if from_start <= self.latest:
            yield from_start
        freed = (
            _ceil_second(moment + self.lead)
            for moment in self.usage.breakpoints(from_start - self.lead, self.latest - self.lead)
        )
        now = self.bounds.free_now
        renewed = [_ceil_second(now.until + self.lead)] if now is not None else []
        for start in heapq.merge(freed, renewed):
            if from_start < start <= self.latest:
                yield start

    def earliest_fit(self, from_start: datetime, need: Amounts) -> datetime | None:
        for start in self.candidates(from_start):
            if need.fits_within(self.free_at(start)):
                return start
        return None

    def variant(self, plan: Plan, *, usage: Usage | None = None) -> _Search:
        """The same search for ``plan`` (against ``usage``, default the same calendar)."""
        return _Search(
            plan,
            profile=self.profile,
            bounds=self.bounds,
            usage=self.usage if usage is None else usage,
            now=self.now,
        )

    def best_free(self) -> Amounts:
        best = Amounts()
        for start in self.candidates(self.earliest):
            best = best.peak(self.free_at(start))
        return best


def generate_offers(
    plan: Plan,
    *,
    profile: PlatformProfile,
    usage: Usage,
    now: datetime,
    max_offers: int,
    bounds: Bounds | None = None,
    later: LaterCalendar | None = None,
) -> OfferSearch:
    """Up to ``max_offers`` feasible alternatives within ``bounds`` (default: the profile's
    pool, no account limit); or none, with messages naming the limits and what would fit
    (:mod:`.advice`; ``later`` reads the calendar past the interval, for a later start).

    An offer at the earliest start that fits, when that is later than the request allowed,
    says why (:func:`.advice.why_it_waits`).
    """
    bounds = bounds or Bounds.of(profile.capacity)
    search = _Search(plan, profile=profile, bounds=bounds, usage=usage, now=now)
    minimum = _offer(plan, search.earliest, low=True, interactive=bounds.interactive)
    first = search.earliest_fit(search.earliest, minimum.amounts)
    if first is None:
        problems = _nothing_fits(plan, search, minimum.amounts)
        advice = what_would_fit(search, minimum.amounts, later=later, now=now)
        return OfferSearch([], [*problems, *advice])
    waits = why_it_waits(search, minimum.amounts, first, now=now)
    notes = (waits,) if waits is not None else ()
    offers = [replace(_offer(plan, first, low=True, interactive=bounds.interactive), notes=notes)]
    larger = replace(
        _largest(plan, first, search.free_at(first), interactive=bounds.interactive), notes=notes
    )
    if larger != offers[0] and len(offers) < max_offers:
        offers.append(larger)
    spread = max_offers - len(offers)
    span = search.latest - first
    for index in range(1, spread + 1):
        if span <= timedelta(0):
            break
        target = _ceil_second(first + span * index / spread)
        start = search.earliest_fit(target, minimum.amounts)
        if start is not None and all(o.start != start for o in offers):
            offers.append(_offer(plan, start, low=True, interactive=bounds.interactive))
    offers.sort(key=lambda o: (o.start, o.amounts))
    return OfferSearch(offers)


def _offer(plan: Plan, start: datetime, *, low: bool, interactive: int) -> Offer:
    return Offer(
        start,
        plan.cores.min if low else plan.cores.max,
        plan.memory.min if low else plan.memory.max,
        {s.name: (s.size.min if low else s.size.max) for s in plan.storage if s.size},
        interactive,
    )


def _largest(plan: Plan, start: datetime, free: Amounts, *, interactive: int) -> Offer:
    """The most the plan may use at ``start``, within its maximums and what is free."""
    cores = max(plan.cores.min, min(plan.cores.max, free.cores))
    memory = max(plan.memory.min, min(plan.memory.max, free.memory_gib))
    spare = free.storage_gib - plan.storage_min
    sizes: dict[str, int] = {}
    for storage in plan.storage:
        if storage.size is None:
            continue
        grow = max(0, min(storage.size.max - storage.size.min, spare))
        sizes[storage.name] = storage.size.min + grow
        spare -= grow
    return Offer(start, cores, memory, sizes, interactive)


def _nothing_fits(plan: Plan, search: _Search, need: Amounts) -> list[MessageItem]:
    window = {
        "duration": format_duration(plan.duration),
        "start": format_instant(plan.window.start),
        "end": format_instant(plan.window.end),
    }
    if search.earliest > search.latest:
        return [
            make_message(
                MessageLevel.ERROR,
                "{path}: the start interval ends at {end}, too soon to prepare "
                "(preparing takes {lead})",
                {
                    "path": "/schedule/requested/start",
                    **window,
                    "lead": format_duration(search.lead),
                },
            )
        ]
    best = search.best_free()
    problems = _over_the_account_limit(search, need, best, window)
    for path, unit, wanted, available in (
        ("/compute/cores/min", "cores", need.cores, best.cores),
        ("/compute/memory/min", "GiB of memory", need.memory_gib, best.memory_gib),
        ("/storage", "GiB of storage", need.storage_gib, best.storage_gib),
    ):
        if wanted > available:
            problems.append(
                make_message(
                    MessageLevel.ERROR,
                    "{path}: no window of {duration} with {wanted} {unit} free, starting "
                    "between {start} and {end} (at most {available} free)",
                    {
                        "path": path,
                        **window,
                        "wanted": wanted,
                        "unit": unit,
                        "available": max(available, 0),
                    },
                )
            )
    if not problems:
        # Each resource fits at some start, but never all of them at the same start.
        template = (
            "{path}: no window of {duration} starting between {start} and {end} has "
            "{cores} cores, {memory} GiB of memory and {storage} GiB of storage free at once"
        )
        if need.interactive:
            template += ", beside one of the account's interactive sessions"
        problems.append(
            make_message(
                MessageLevel.ERROR,
                template,
                {
                    "path": "/schedule/requested/start",
                    **window,
                    "cores": need.cores,
                    "memory": need.memory_gib,
                    "storage": need.storage_gib,
                },
            )
        )
    return problems


def _over_the_account_limit(
    search: _Search, need: Amounts, best: Amounts, window: dict[str, str]
) -> list[MessageItem]:
    """The account's interactive-session limit, when it leaves no start free of it."""
    limit = search.bounds.limit
    if limit is None or need.interactive <= best.interactive:
        return []
    values: dict[str, Any] = {
        "path": "/executable",
        **window,
        "platform": limit.platform,
        "limit": limit.most,
        "held": limit.most - max(best.interactive, 0),
        "elsewhere": limit.elsewhere,
    }
    template = (
        "{path}: {platform} allows at most {limit} interactive sessions per account at "
        "once; {held} are booked over every window of {duration} starting between {start} "
        "and {end}"
    )
    if limit.elsewhere:
        template += " ({elsewhere} of them started outside this broker)"
    return [make_message(MessageLevel.ERROR, template, values)]


# ---------------------------------------------------------------------- costs


def _hours(span: timedelta) -> float:
    return span.total_seconds() / 3600


def costs_of(
    profile: PlatformProfile, *, cores: int, memory_gib: int, storage_gib: int, duration: timedelta
) -> dict[str, float]:
    """Monetary, energy and carbon costs of holding these amounts for ``duration``."""
    rates = profile.cost
    hours = _hours(duration)
    money = hours * (
        cores * rates.per_core_hour
        + memory_gib * rates.per_memory_gib_hour
        + storage_gib * rates.per_storage_gib_hour
    )
    energy = hours * (
        cores * rates.energy_kwh_per_core_hour + memory_gib * rates.energy_kwh_per_memory_gib_hour
    )
    return {
        COST_MONETARY: round(money, 6),
        COST_ENERGY: round(energy, 6),
        COST_CARBON: round(energy * rates.carbon_g_per_kwh, 6),
    }


def cost_documents(profile: PlatformProfile, costs: dict[str, float]) -> list[dict[str, Any]]:
    units = {
        COST_MONETARY: profile.cost.currency,
        COST_ENERGY: "kWh",
        COST_CARBON: "g CO2e",
    }
    return [
        {
            "kind": kinds.COST_SIMPLE_MINMAX,
            "type": cost_type,
            "description": f"{cost_type.rsplit(':', 1)[-1]} cost, in {units[cost_type]}",
            "min": value,
            "max": value,
        }
        for cost_type, value in costs.items()
    ]


def summed_costs(parts: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A session's costs: the sum, type by type, of its components' costs."""
    total: dict[str, dict[str, Any]] = {}
    for documents in parts:
        for cost in documents:
            found = total.get(cost["type"])
            if found is None:
                total[cost["type"]] = dict(cost)
            else:
                found["min"] = round(found["min"] + cost["min"], 6)
                found["max"] = round(found["max"] + cost["max"], 6)
    return list(total.values())


def component_costs(
    profile: PlatformProfile,
    *,
    cores: int,
    memory_gib: int,
    storage_gib: dict[str, int],
    duration: timedelta,
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """What the compute costs, and each storage resource by name, over ``duration``."""
    compute = cost_documents(
        profile,
        costs_of(profile, cores=cores, memory_gib=memory_gib, storage_gib=0, duration=duration),
    )
    storage = {
        name: cost_documents(
            profile, costs_of(profile, cores=0, memory_gib=0, storage_gib=size, duration=duration)
        )
        for name, size in storage_gib.items()
    }
    return compute, storage


def metric_documents(profile: PlatformProfile) -> list[dict[str, Any]]:
    """What the platform promises of its speed: the range over its core types (a request's
    minimum is met by the lowest only), and the storage throughput likewise.
    """
    return [
        {
            "kind": kinds.METRIC_SIMPLE_MINMAX,
            "type": METRIC_PERFORMANCE,
            "description": "benchmark score of one core",
            "min": profile.compute_performance[0],
            "max": profile.compute_performance[1],
        },
        {
            "kind": kinds.METRIC_SIMPLE_MINMAX,
            "type": METRIC_IO_THROUGHPUT,
            "description": "storage throughput, in MB/s",
            "min": profile.io_throughput[0],
            "max": profile.io_throughput[1],
        },
    ]


# ---------------------------------------------------------------------- sessions


def build_session(
    plan: Plan,
    offer: Offer,
    *,
    profile: PlatformProfile,
    owner: str,
    now: datetime,
    phase: SessionPhase,
    expires: datetime | None,
    offer_set_uuid: UUID | None,
    position: int,
    notes: list[MessageItem],
    next_due: datetime | None = None,
    moves_earlier: bool = False,
    accepted_at: datetime | None = None,
) -> SessionRecord:
    """The session (and its components, with schedules and costs) that ``offer`` describes.

    Dependency order (DESIGN §3): storage, then data into it; executable alongside; compute
    last, once everything it mounts is ready. Release runs the other way round.

    The seed rule: storage and the executable start preparing as soon as the session may
    hold anything, its booking start (``start - lead``), not just in time. For an offer at
    the earliest start that is the moment it is made, so they start at accept and an image
    pull gets its head start; for a later offer it is that offer's own lead before its start
    (the planner puts it later, as DESIGN allows for a session that starts days ahead).
    Data and compute stay just in time: each starts when what it needs is planned ready.
    So the calendar books exactly the span it searched, ``[start - lead, end + tail]``.

    ``moves_earlier``: once accepted, it may start earlier when capacity frees up, never
    before the start interval's beginning (``earliest_start``) and never later than
    ``offer.start`` (``promised_start``); ``accepted_at``: when (a direct run's: ``now``).
    """
    times = SessionTimes.of(plan, profile)
    start, duration = offer.start, plan.duration
    end = start + duration
    booking_start = start - times.lead
    compute_schedule = Schedule(
        prepare_start=start - times.compute_prepare,
        prepare_duration=times.compute_prepare,
        available_start=start,
        available_duration=duration,
        release_duration=times.compute_release,
    )
    ready_for_compute = start - times.compute_prepare
    after_compute = end + times.compute_release

    def before_compute(prepare: timedelta, release: timedelta, *, until: datetime) -> Schedule:
        return Schedule(
            prepare_start=ready_for_compute - prepare,
            prepare_duration=prepare,
            available_start=ready_for_compute,
            available_duration=until - ready_for_compute,
            release_duration=release,
        )

    def at_booking_start(prepare: timedelta, release: timedelta, *, until: datetime) -> Schedule:
        ready = booking_start + prepare
        return Schedule(
            prepare_start=booking_start,
            prepare_duration=prepare,
            available_start=ready,
            available_duration=until - ready,
            release_duration=release,
        )

    executable_schedule = at_booking_start(
        times.executable_prepare, times.executable_release, until=after_compute
    )
    after_data = after_compute + times.data_release
    storage_schedule = at_booking_start(
        times.storage_prepare, times.storage_release, until=after_data
    )

    session_uuid = uuid4()
    # Storage and data get their uuids first: other components refer to them by uuid.
    uuids: dict[str, UUID] = {c.name: uuid4() for c in [*plan.storage, *plan.data]}
    component_phase = (
        ComponentPhase.INITIALIZING if phase is SessionPhase.OFFERED else ComponentPhase.WAITING
    )

    def record(
        component: PlannedComponent, schedule: Schedule, spec: dict[str, Any], position: int
    ) -> ComponentRecord:
        return ComponentRecord(
            uuid=uuids.get(component.name) or uuid4(),
            session_uuid=session_uuid,
            owner=owner,
            role=component.role,
            position=position,
            name=component.name,
            kind=component.kind,
            spec=spec,
            description=component.description,
            phase=component_phase,
            schedule=schedule,
            created=now,
            modified=now,
            messages=list(component.notes),
        )

    storage_sizes = {
        s.name: offer.storage_gib.get(s.name, s.size.min if s.size else 0) for s in plan.storage
    }
    compute_costs, storage_costs = component_costs(
        profile,
        cores=offer.cores,
        memory_gib=offer.memory_gib,
        storage_gib=storage_sizes,
        duration=duration,
    )
    compute_spec = {
        **plan.compute.spec,
        "costs": compute_costs,
        "metrics": metric_documents(profile),
        "cores": {"min": offer.cores, "max": offer.cores},
        "memory": {"min": offer.memory_gib, "max": offer.memory_gib},
    }
    records = [
        record(plan.executable, executable_schedule, plan.executable.spec, 0),
        record(plan.compute, compute_schedule, compute_spec, 0),
    ]
    for index, storage in enumerate(plan.storage):
        size = storage_sizes[storage.name]
        spec = {
            **storage.spec,
            "size": {"min": size, "max": size},
            "costs": storage_costs[storage.name],
        }
        held = tuple(uuids[d.name] for d in plan.data if d.storage == storage.name)
        spec.update(Refs(data=held).fields())
        records.append(record(storage, storage_schedule, spec, index))
    for index, data in enumerate(plan.data):
        refs = Refs(storage=uuids[data.storage] if data.storage else None)
        spec = {**data.spec, **refs.fields()}
        prepare = times.data_prepare[data.name]
        schedule = before_compute(prepare, times.data_release, until=after_compute)
        records.append(record(data, schedule, spec, index))
    for index, volume in enumerate(plan.volumes):
        refs = Refs(resource=uuids[volume.resource] if volume.resource else None)
        spec = {**volume.spec, **refs.fields()}
        records.append(record(volume, compute_schedule, spec, index))

    first_prepare = min(r.schedule.prepare_start for r in records)
    session_schedule = Schedule(
        prepare_start=first_prepare,
        prepare_duration=start - first_prepare,
        available_start=start,
        available_duration=duration,
        release_duration=max(r.schedule.release_end for r in records) - end,
    )
    storage_gib = sum(offer.storage_gib.values())
    return SessionRecord(
        uuid=session_uuid,
        owner=owner,
        offer_set_uuid=offer_set_uuid,
        position=position,
        phase=phase,
        expires=expires,
        schedule=session_schedule,
        cores=offer.cores,
        memory_gib=offer.memory_gib,
        storage_gib=storage_gib,
        interactive=offer.interactive,
        created=now,
        modified=now,
        messages=[*notes, *offer.notes, *times.notes],
        connectors=[],
        components=records,
        costs=summed_costs([compute_costs, *storage_costs.values()]),
        next_due=next_due,
        moves_earlier=moves_earlier,
        earliest_start=plan.window.start,
        promised_start=start,
        accepted_at=accepted_at,
    )
