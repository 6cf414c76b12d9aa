"""Offers: when a plan can run and with how much, and the session records that say so.

This is the simple generator (issue "capacity calendar" replaces it with one that books
against the pool): it offers the earliest start that leaves time to prepare, at the
minimum amounts; the same start at the maximum amounts when the request allows more; and
later starts spread over the requested start interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from execbroker.model.phases import ComponentPhase, SessionPhase
from execbroker.model.records import ComponentRecord, ComponentRole, Schedule, SessionRecord
from execbroker.model.wire import MessageItem
from execbroker.planning.profile import PlatformProfile
from execbroker.planning.validation import Plan, PlannedComponent

__all__ = ["Offer", "SessionTimes", "build_session", "generate_offers", "lead_time"]


@dataclass(frozen=True)
class Offer:
    """One alternative: a start and the amounts offered."""

    start: datetime
    cores: int
    memory_gib: int
    storage_gib: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionTimes:
    """How long each role prepares and releases, as the planner schedules them."""

    profile: PlatformProfile
    has_data: bool
    has_storage: bool

    def prepare(self, role: ComponentRole) -> timedelta:
        return self.profile.prepare.get(role, timedelta(0))

    def release(self, role: ComponentRole) -> timedelta:
        return self.profile.release.get(role, timedelta(0))

    @property
    def data_prepare(self) -> timedelta:
        return self.prepare(ComponentRole.DATA) if self.has_data else timedelta(0)

    @property
    def data_release(self) -> timedelta:
        return self.release(ComponentRole.DATA) if self.has_data else timedelta(0)


def lead_time(plan: Plan, profile: PlatformProfile) -> timedelta:
    """How long before its start a session must begin preparing."""
    times = SessionTimes(profile, has_data=bool(plan.data), has_storage=bool(plan.storage))
    compute = times.prepare(ComponentRole.COMPUTE)
    chain = compute + times.data_prepare
    if plan.storage:
        chain += times.prepare(ComponentRole.STORAGE)
    return max(compute + times.prepare(ComponentRole.EXECUTABLE), chain)


def _ceil_second(moment: datetime) -> datetime:
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def generate_offers(
    plan: Plan, *, profile: PlatformProfile, now: datetime, max_offers: int
) -> list[Offer]:
    """Up to ``max_offers`` alternatives, earliest first; empty when no start fits."""
    earliest = _ceil_second(max(plan.window.start, now + lead_time(plan, profile)))
    if earliest > plan.window.end:
        return []
    smallest = Offer(
        earliest,
        plan.cores.min,
        plan.memory.min,
        {s.name: s.size.min for s in plan.storage if s.size},
    )
    largest = Offer(
        earliest,
        plan.cores.max,
        plan.memory.max,
        {s.name: s.size.max for s in plan.storage if s.size},
    )
    offers = [smallest]
    if largest != smallest and len(offers) < max_offers:
        offers.append(largest)
    later = max_offers - len(offers)
    span = plan.window.end - earliest
    if later > 0 and span > timedelta(0):
        step = span / later
        for index in range(1, later + 1):
            start = _ceil_second(earliest + step * index)
            if start > plan.window.end:
                start = plan.window.end.replace(microsecond=0)
            if start > earliest and all(o.start != start for o in offers):
                offers.append(
                    Offer(start, smallest.cores, smallest.memory_gib, smallest.storage_gib)
                )
    return offers


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
) -> SessionRecord:
    """The session (and its components, with schedules) that ``offer`` describes."""
    times = SessionTimes(profile, has_data=bool(plan.data), has_storage=bool(plan.storage))
    start, duration = offer.start, plan.duration
    end = start + duration
    t_compute = times.prepare(ComponentRole.COMPUTE)
    r_compute = times.release(ComponentRole.COMPUTE)
    compute_schedule = Schedule(
        prepare_start=start - t_compute,
        prepare_duration=t_compute,
        available_start=start,
        available_duration=duration,
        release_duration=r_compute,
    )
    # Executable and data are ready before compute prepares, and released after it.
    ready_for_compute = start - t_compute
    after_compute = end + r_compute

    def follower(role: ComponentRole, prepare: timedelta, release: timedelta) -> Schedule:
        return Schedule(
            prepare_start=ready_for_compute - prepare,
            prepare_duration=prepare,
            available_start=ready_for_compute,
            available_duration=after_compute - ready_for_compute,
            release_duration=release,
        )

    executable_schedule = follower(
        ComponentRole.EXECUTABLE,
        times.prepare(ComponentRole.EXECUTABLE),
        times.release(ComponentRole.EXECUTABLE),
    )
    data_schedule = follower(ComponentRole.DATA, times.data_prepare, times.data_release)
    storage_ready = ready_for_compute - times.data_prepare
    t_storage = times.prepare(ComponentRole.STORAGE)
    storage_schedule = Schedule(
        prepare_start=storage_ready - t_storage,
        prepare_duration=t_storage,
        available_start=storage_ready,
        available_duration=after_compute + times.data_release - storage_ready,
        release_duration=times.release(ComponentRole.STORAGE),
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

    compute_spec = {
        **plan.compute.spec,
        "cores": {"min": offer.cores, "max": offer.cores},
        "memory": {"min": offer.memory_gib, "max": offer.memory_gib},
    }
    records = [
        record(plan.executable, executable_schedule, plan.executable.spec, 0),
        record(plan.compute, compute_schedule, compute_spec, 0),
    ]
    for index, storage in enumerate(plan.storage):
        size = offer.storage_gib.get(storage.name, storage.size.min if storage.size else 0)
        spec = {**storage.spec, "size": {"min": size, "max": size}}
        held = [str(uuids[d.name]) for d in plan.data if d.storage == storage.name]
        if held:
            spec["data"] = held
        records.append(record(storage, storage_schedule, spec, index))
    for index, data in enumerate(plan.data):
        spec = dict(data.spec)
        if data.storage:
            spec["storage"] = str(uuids[data.storage])
        records.append(record(data, data_schedule, spec, index))
    for index, volume in enumerate(plan.volumes):
        spec = dict(volume.spec)
        if volume.resource:
            spec["resource"] = str(uuids[volume.resource])
        records.append(record(volume, compute_schedule, spec, index))

    session_schedule = Schedule(
        prepare_start=min(r.schedule.prepare_start for r in records),
        prepare_duration=start - min(r.schedule.prepare_start for r in records),
        available_start=start,
        available_duration=duration,
        release_duration=max(r.schedule.release_end for r in records) - end,
    )
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
        storage_gib=sum(offer.storage_gib.values()),
        created=now,
        modified=now,
        messages=list(notes),
        connectors=[],
        components=records,
    )
