"""What the engine does with one session at one instant: DESIGN §3 as code.

:func:`advance` looks at every component, acts on those whose time has come (or whose
circumstances changed), and returns what changed. Each component follows its own rule:

- **storage, executable** prepare at their planned prepare start;
- **data** prepares at its start, and fails at once if its storage is not AVAILABLE;
- **compute** prepares at its start, and fails at once if the executable or anything it
  mounts is not AVAILABLE — unless that dependency has not yet had its planned preparing
  time since it actually started (it started late: the broker was down, or the offer was
  accepted close to its start), in which case it waits for it (the same holds for data and
  its storage); it becomes AVAILABLE when the platform has it up,
  RUNNING while the executable runs;
- a component still preparing when its budget (planned duration + slack) runs out is
  CANCELLED;
- the run ends when the executable exits (0: COMPLETED, else FAILED), when the offered time
  is up, or when the user cancels; then everything is released — compute first, then the
  executable and data, then storage — and each component ends COMPLETED, or FAILED /
  CANCELLED when that is what happened to it;
- any failure ends the session FAILED, after releasing the rest;
- volume mounts follow their compute resource.

Platform calls are idempotent by component, so running :func:`advance` again after a crash
adopts what was already started instead of starting it twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from execbroker.clock import Clock
from execbroker.model import kinds
from execbroker.model.graph import SessionGraph
from execbroker.model.isotime import format_duration, format_instant
from execbroker.model.messages import make_message
from execbroker.model.phases import (
    TERMINAL_COMPONENT_PHASES,
    ComponentPhase,
    ConnectorStatus,
    MessageLevel,
    SessionPhase,
    derive_session_phase,
    still_releasing,
)
from execbroker.model.records import ComponentRecord, ComponentRole, SessionRecord
from execbroker.model.wire import MessageItem
from execbroker.platforms.base import (
    Platform,
    PlatformError,
    PlatformState,
    PlatformStatus,
    PlatformUnavailableError,
    Work,
)

__all__ = ["Advance", "ComponentChange", "EngineTimings", "advance"]

logger = logging.getLogger(__name__)

_ORDER = (
    ComponentRole.STORAGE,
    ComponentRole.EXECUTABLE,
    ComponentRole.DATA,
    ComponentRole.COMPUTE,
    ComponentRole.VOLUME,
)
_MAX_ROUNDS = 12


@dataclass(frozen=True)
class EngineTimings:
    budget_slack: timedelta = timedelta(seconds=60)
    poll_interval: timedelta = timedelta(seconds=5)
    end_warning: timedelta = timedelta(minutes=5)
    # Longest a platform call may take: shorter than the engine's lease, so that a step
    # never outlives its claim. A call cut off is tried again, like an unreachable platform.
    call_deadline: timedelta = timedelta(seconds=30)


@dataclass
class ComponentChange:
    uuid: UUID
    phase: ComponentPhase
    due: datetime | None
    outcome: ComponentPhase | None
    started_at: datetime | None
    exit_code: int | None
    messages: list[MessageItem] = field(default_factory=list)


@dataclass
class Advance:
    """What one pass over a session changed, to be committed together."""

    session_uuid: UUID
    revision: int
    phase: SessionPhase
    releasing: bool  # its phase is final, its components are not all released yet
    next_due: datetime | None
    ending: SessionPhase | None
    warned: bool
    connectors: list[dict[str, Any]]
    components: list[ComponentChange]
    messages: list[MessageItem] = field(default_factory=list)
    # Components whose release this pass decided but left for the next one to ask for.
    deferred: frozenset[UUID] = frozenset()


class _Component:
    """A component's working state during one pass."""

    def __init__(self, record: ComponentRecord) -> None:
        self.record = record
        self.phase = record.phase
        self.due = record.due
        self.outcome = record.outcome
        self.started_at = record.started_at
        self.exit_code = record.exit_code
        self.messages: list[MessageItem] = []

    @property
    def role(self) -> ComponentRole:
        return self.record.role

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL_COMPONENT_PHASES

    def changed(self) -> bool:
        r = self.record
        return bool(self.messages) or (
            (self.phase, self.due, self.outcome, self.started_at, self.exit_code)
            != (r.phase, r.due, r.outcome, r.started_at, r.exit_code)
        )

    def change(self) -> ComponentChange:
        return ComponentChange(
            uuid=self.record.uuid,
            phase=self.phase,
            due=None if self.ended else self.due,
            outcome=self.outcome,
            started_at=self.started_at,
            exit_code=self.exit_code,
            messages=self.messages,
        )


class _Pass:
    def __init__(
        self,
        session: SessionRecord,
        platform: Platform,
        now: datetime,
        timings: EngineTimings,
        clock: Clock | None = None,
    ) -> None:
        self.session = session
        self.platform = platform
        self.now = now
        self.timings = timings
        self.clock = clock
        self.ending = session.ending
        self.warned = session.warned
        self.connectors = [dict(c) for c in session.connectors]
        self.messages: list[MessageItem] = []
        self.parts = [
            _Component(c)
            for role in _ORDER
            for c in sorted(session.components_of(role), key=lambda c: c.position)
        ]
        self.by_uuid = {str(p.record.uuid): p for p in self.parts}
        self.graph = SessionGraph.of(session)
        self.compute = next((p for p in self.parts if p.role is ComponentRole.COMPUTE), None)
        self.progress = False
        # Releases decided in this pass whose platform call waits for the next one.
        self.deferred: set[UUID] = set()

    # -- messages and decisions -------------------------------------------------------

    def note(
        self, part: _Component | None, level: MessageLevel, template: str, **values: object
    ) -> None:
        # Stamped when it happened: after a slow platform call, later than the pass began.
        item = make_message(
            level, template, values, time=self.clock.now() if self.clock else self.now
        )
        (part.messages if part else self.messages).append(item)

    def decide(self, ending: SessionPhase, template: str, **values: object) -> None:
        """The run is over; the first decision stands (a FAILED outranks a later one)."""
        if self.ending is None:
            self.ending = ending
            level = MessageLevel.ERROR if ending is SessionPhase.FAILED else MessageLevel.INFO
            self.note(None, level, template, **values)
        self.progress = True

    def move(self, part: _Component, phase: ComponentPhase, due: datetime | None = None) -> None:
        if part.phase is not phase:
            part.phase = phase
            self.progress = True
        part.due = due

    # -- platform calls ---------------------------------------------------------------

    async def call(self, part: _Component, action: str) -> PlatformStatus | None:
        work = Work(self.session, part.record)
        try:
            async with asyncio.timeout(self.timings.call_deadline.total_seconds()):
                match action:
                    case "prepare":
                        return await self.platform.prepare(work)
                    case "release":
                        return await self.platform.release(work)
                    case _:
                        return await self.platform.poll(work)
        except TimeoutError:
            # Its outcome is unknown: tried again soon (platform calls are idempotent by
            # component, so a create that did arrive is adopted, not made twice).
            logger.warning(
                "platform call timed out; trying again",
                extra={"session": str(self.session.uuid), "action": action},
            )
            part.due = self.now + self.timings.poll_interval
            return None
        except PlatformError as failure:
            self.fail(
                part,
                "The platform refused to {action} {name}: {error}",
                action=action,
                name=part.name,
                error=str(failure),
            )
            return None
        except PlatformUnavailableError as unavailable:
            # Not the component's fault: it stays where it is and the step is tried again.
            part.due = self.now + (unavailable.retry_after or self.timings.poll_interval)
            return None

    # -- the rules ------------------------------------------------------------------

    def fail(self, part: _Component, template: str, **values: object) -> None:
        """The component failed: release what the platform has of it, end FAILED."""
        self.note(part, MessageLevel.ERROR, template, **values)
        part.outcome = ComponentPhase.FAILED
        self.decide(
            SessionPhase.FAILED,
            "The session failed: {name} failed",
            name=part.name,
        )
        if part.started_at is None or part.phase is ComponentPhase.RELEASING:
            self.move(part, ComponentPhase.FAILED)
        else:
            # As in release(): the failure is committed before the platform is asked to
            # release, or a crash in between would leave only a release to read back, which
            # looks like a normal ending.
            self.move(part, ComponentPhase.RELEASING, self.now)
            self.deferred.add(part.record.uuid)

    def wants_attention(self, part: _Component) -> bool:
        if part.ended or part.record.uuid in self.deferred:
            return False
        if self.ending is not None and part.phase is not ComponentPhase.RELEASING:
            return True
        return part.due is None or part.due <= self.now

    async def step(self, part: _Component) -> None:
        if not self.wants_attention(part):
            return
        if part.role is ComponentRole.VOLUME:
            self.follow_compute(part)
            return
        match part.phase:
            case ComponentPhase.INITIALIZING | ComponentPhase.WAITING:
                await self.start(part)
            case ComponentPhase.PREPARING:
                await self.preparing(part)
            case ComponentPhase.AVAILABLE | ComponentPhase.RUNNING:
                await self.up(part)
            case ComponentPhase.RELEASING:
                await self.releasing(part)
            case _:
                pass

    async def start(self, part: _Component) -> None:
        if self.ending is not None:
            part.outcome = ComponentPhase.CANCELLED
            self.move(part, ComponentPhase.CANCELLED)
            self.note(part, MessageLevel.INFO, "Not started: the session ended first")
            return
        begin = part.record.schedule.prepare_start
        if self.now < begin:
            part.due = begin
            return
        late = self.late_dependencies(part)
        if late:
            # They started late, not slowly: wait for them to have had their planned time.
            part.due = self.now + self.timings.poll_interval
            return
        missing = self.unready_dependencies(part)
        if missing:
            self.fail(
                part,
                "{name} cannot start: {missing} not AVAILABLE at its prepare start",
                name=part.name,
                missing=missing,
            )
            return
        status = await self.call(part, "prepare")
        if status is None:
            return
        part.started_at = self.now
        self.note(part, MessageLevel.INFO, "Preparing {name}", name=part.name)
        self.move(part, ComponentPhase.PREPARING, self.now)
        await self.apply(part, status)

    def late_dependencies(self, part: _Component) -> list[_Component]:
        """Dependencies not ready for reasons that are not the platform's fault: waited
        for, rather than failing ``part``."""
        return [needed for needed in self.dependencies(part) if self.late(needed)]

    def late(self, part: _Component) -> bool:
        """Whether ``part`` is behind its plan through no fault of the platform's: it is
        preparing and has not yet had its planned preparing time since it actually started
        (it started late: the broker was down, or the offer was accepted close to its
        start); or it has not started, because its own start has not come or because what
        it needs is late in the same way (transitively: a data resource waiting behind a
        late storage makes its compute wait too)."""
        match part.phase:
            case ComponentPhase.PREPARING:
                return (
                    part.started_at is not None
                    and self.now < part.started_at + part.record.schedule.prepare_duration
                )
            case ComponentPhase.INITIALIZING | ComponentPhase.WAITING:
                if self.now < part.record.schedule.prepare_start:
                    return True
                return any(self.late(needed) for needed in self.dependencies(part))
            case _:
                return False

    def dependencies(self, part: _Component) -> list[_Component]:
        return [self.by_uuid[str(c.uuid)] for c in self.graph.needs(part.record)]

    def unready_dependencies(self, part: _Component) -> str:
        return ", ".join(
            f"{p.role.value} '{p.name}' is {p.phase.value}"
            for p in self.dependencies(part)
            if p.phase is not ComponentPhase.AVAILABLE
        )

    async def preparing(self, part: _Component) -> None:
        if self.ending is not None:
            await self.release(part, ComponentPhase.CANCELLED)
            return
        status = await self.call(part, "poll")
        if status is not None:
            await self.apply(part, status)

    async def apply(self, part: _Component, status: PlatformStatus) -> None:
        """Take in what the platform says about a preparing or running component."""
        if status.connectors and part.role is ComponentRole.COMPUTE:
            self.publish_connectors(status.connectors)
        match status.state:
            case PlatformState.PREPARING:
                budget = part.record.schedule.prepare_duration + self.timings.budget_slack
                deadline = (part.started_at or self.now) + budget
                if self.now >= deadline:
                    self.note(
                        part,
                        MessageLevel.WARN,
                        "{name} was still preparing after its budget of {budget}; cancelled",
                        name=part.name,
                        budget=format_duration(budget),
                    )
                    self.decide(
                        SessionPhase.CANCELLED,
                        "The session was cancelled: {name} did not become ready in time",
                        name=part.name,
                    )
                    await self.release(part, ComponentPhase.CANCELLED)
                else:
                    part.due = min(self.next_check(status), deadline)
            case PlatformState.READY:
                if part.phase is not ComponentPhase.AVAILABLE:
                    self.note(part, MessageLevel.INFO, "{name} is available", name=part.name)
                    self.record_notes(part, status)
                self.move(part, ComponentPhase.AVAILABLE, self.compute_due(part, status))
            case PlatformState.RUNNING:
                if part.phase is not ComponentPhase.RUNNING:
                    self.note(part, MessageLevel.INFO, "{name} is running", name=part.name)
                self.move(part, ComponentPhase.RUNNING, self.compute_due(part, status))
            case PlatformState.EXITED:
                await self.exited(part, status.exit_code or 0, status)
            case PlatformState.FAILED:
                self.fail(
                    part,
                    "{name} failed on the platform: {error}",
                    name=part.name,
                    error=status.message or "no reason given",
                )
            case PlatformState.MISSING:
                self.fail(part, "{name} is no longer on the platform", name=part.name)
            case PlatformState.RELEASING | PlatformState.RELEASED:
                await self.adopt_release(part, status)

    async def adopt_release(self, part: _Component, status: PlatformStatus) -> None:
        """The platform is releasing what we thought was up: only the broker releases, so
        this is a release it asked for before a crash lost the record. Releases whose
        reason matters are committed before they are asked for (see :meth:`release`), so
        this one was a normal ending."""
        if status.exit_code not in (None, 0):
            await self.exited(part, status.exit_code, status)
            return
        self.note(part, MessageLevel.INFO, "{name} was already being released", name=part.name)
        if part.role is ComponentRole.COMPUTE and status.exit_code == 0:
            part.exit_code = 0
        self.decide(SessionPhase.COMPLETED, "The run completed")
        part.outcome = part.outcome or ComponentPhase.COMPLETED
        self.move(part, ComponentPhase.RELEASING, self.now)
        await self.released(part, status)

    def next_check(self, status: PlatformStatus) -> datetime:
        return self.now + (status.next_check or self.timings.poll_interval)

    def compute_due(
        self, part: _Component, status: PlatformStatus | None = None
    ) -> datetime | None:
        """When a component that is up needs looking at again: compute until its time is up."""
        if part.role is not ComponentRole.COMPUTE:
            return None
        end = self.run_end()
        due = end
        if status is not None and status.next_check is not None:
            due = min(due, self.next_check(status))
        elif status is not None:
            due = min(due, self.now + self.timings.poll_interval)
        if self.interactive() and not self.warned:
            due = min(due, max(self.now, end - self.timings.end_warning))
        return due

    def run_end(self) -> datetime:
        schedule = self.compute.record.schedule if self.compute else self.session.schedule
        return schedule.available_start + schedule.available_duration

    def interactive(self) -> bool:
        executable = self.session.component(ComponentRole.EXECUTABLE)
        return executable is not None and executable.kind == kinds.EXECUTABLE_JUPYTER

    async def up(self, part: _Component) -> None:
        if self.ending is not None:
            if self.may_release(part):
                outcome = (
                    ComponentPhase.CANCELLED
                    if self.ending is SessionPhase.CANCELLED and part.role is ComponentRole.COMPUTE
                    else ComponentPhase.COMPLETED
                )
                await self.release(part, part.outcome or outcome)
            else:
                part.due = None  # its turn comes when what it waits for has ended
            return
        if part.role is not ComponentRole.COMPUTE:
            part.due = None
            return
        end = self.run_end()
        if self.now >= end:
            # A decision like a cancel: committed before the platform is asked, so that an
            # extension that landed first (a newer revision) undoes it instead of being lost.
            self.decide(
                SessionPhase.COMPLETED,
                "The offered time ended at {end}; releasing",
                end=format_instant(end),
            )
            await self.release(part, ComponentPhase.COMPLETED, defer=True)
            return
        if self.interactive() and not self.warned and self.now >= end - self.timings.end_warning:
            self.warned = True
            self.note(
                None,
                MessageLevel.WARN,
                "This session will be released at {end}: save your work before then",
                end=format_instant(end),
            )
            for connector in self.connectors:
                connector["releases"] = format_instant(end)
            self.progress = True
        status = await self.call(part, "poll")
        if status is not None:
            await self.apply(part, status)

    def record_notes(self, part: _Component, status: PlatformStatus | None) -> None:
        """What the platform found worth keeping (a checksum, the run's last output)."""
        for item in status.notes if status else ():
            part.messages.append(
                make_message(item.level, item.template, item.values, time=self.now)
            )

    async def exited(
        self, part: _Component, code: int, status: PlatformStatus | None = None
    ) -> None:
        part.exit_code = code
        if code == 0:
            self.note(part, MessageLevel.INFO, "The executable exited with code 0")
            self.record_notes(part, status)
            self.decide(SessionPhase.COMPLETED, "The run completed")
            await self.release(part, ComponentPhase.COMPLETED)
            return
        reason = " (killed: out of memory?)" if code == 137 else ""
        self.note(
            part,
            MessageLevel.ERROR,
            "The executable exited with code {code}{reason}",
            code=code,
            reason=reason,
        )
        self.record_notes(part, status)
        part.outcome = ComponentPhase.FAILED
        self.decide(SessionPhase.FAILED, "The run failed: exit code {code}", code=code)
        await self.release(part, ComponentPhase.FAILED)

    def may_release(self, part: _Component) -> bool:
        """Compute first; then the executable and data; storage after the data it holds."""
        compute_done = self.compute is None or self.compute.ended
        match part.role:
            case ComponentRole.COMPUTE:
                return True
            case ComponentRole.EXECUTABLE | ComponentRole.DATA:
                return compute_done
            case ComponentRole.STORAGE:
                held = [self.by_uuid[str(c.uuid)] for c in self.graph.held_data(part.record)]
                return compute_done and all(p.ended for p in held)
            case _:
                return True

    async def release(
        self, part: _Component, outcome: ComponentPhase, *, defer: bool = False
    ) -> None:
        part.outcome = part.outcome or outcome
        if part.started_at is None:
            self.move(part, part.outcome)
            return
        if (
            defer
            or part.outcome is not ComponentPhase.COMPLETED
            or self.ending is not SessionPhase.COMPLETED
        ):
            # Why it is released (a failure, a cancel) cannot be read back from the platform
            # after a crash: commit the decision first, call the platform on the next pass.
            self.note(part, MessageLevel.INFO, "Releasing {name}", name=part.name)
            self.move(part, ComponentPhase.RELEASING, self.now)
            self.deferred.add(part.record.uuid)
            return
        status = await self.call(part, "release")
        if status is None:
            return
        self.note(part, MessageLevel.INFO, "Releasing {name}", name=part.name)
        self.move(part, ComponentPhase.RELEASING, self.now)
        await self.released(part, status)

    async def releasing(self, part: _Component) -> None:
        status = await self.call(part, "release")
        if status is not None:
            await self.released(part, status)

    async def released(self, part: _Component, status: PlatformStatus) -> None:
        match status.state:
            case PlatformState.RELEASED | PlatformState.MISSING:
                final = part.outcome or ComponentPhase.COMPLETED
                self.note(part, MessageLevel.INFO, "{name} released", name=part.name)
                self.move(part, final)
            case PlatformState.FAILED:
                self.note(
                    part,
                    MessageLevel.ERROR,
                    "Releasing {name} failed: {error}",
                    name=part.name,
                    error=status.message or "no reason given",
                )
                part.outcome = ComponentPhase.FAILED
                self.decide(
                    SessionPhase.FAILED, "The session failed while releasing {name}", name=part.name
                )
                self.move(part, ComponentPhase.FAILED)
            case _:
                part.due = self.next_check(status)

    def follow_compute(self, part: _Component) -> None:
        compute = self.compute
        if compute is None:
            self.move(part, ComponentPhase.CANCELLED)
            return
        mirror = {
            ComponentPhase.PREPARING: ComponentPhase.PREPARING,
            ComponentPhase.AVAILABLE: ComponentPhase.AVAILABLE,
            ComponentPhase.RUNNING: ComponentPhase.AVAILABLE,
            ComponentPhase.RELEASING: ComponentPhase.RELEASING,
            ComponentPhase.COMPLETED: ComponentPhase.COMPLETED,
            ComponentPhase.FAILED: ComponentPhase.COMPLETED,
            ComponentPhase.CANCELLED: ComponentPhase.CANCELLED,
        }
        target = mirror.get(compute.phase)
        if compute.phase is ComponentPhase.FAILED and compute.started_at is None:
            target = ComponentPhase.CANCELLED
        if target is not None and target is not part.phase:
            part.started_at = part.started_at or compute.started_at
            self.move(part, target)
        part.due = None

    def publish_connectors(self, found: list[dict[str, Any]]) -> None:
        known = {c.get("location"): c for c in self.connectors}
        if all(connector.get("location") in known for connector in found):
            return
        # The platform answers with the compute's whole set: a changed location replaces
        # the old connector instead of piling up next to it.
        self.connectors = [
            known.get(connector.get("location"))
            or {**connector, "status": ConnectorStatus.PREPARING.value}
            for connector in found
        ]
        self.progress = True

    def connector_status(self) -> None:
        compute = self.compute
        if compute is None or not self.connectors:
            return
        if compute.phase in (ComponentPhase.AVAILABLE, ComponentPhase.RUNNING):
            status = ConnectorStatus.AVAILABLE
        elif compute.phase in (ComponentPhase.WAITING, ComponentPhase.PREPARING):
            status = ConnectorStatus.PREPARING
        else:
            status = ConnectorStatus.FINISHED
        for connector in self.connectors:
            connector["status"] = status.value

    def released_after_cancel(self) -> None:
        """A cancelled session says when the last of its components was released (its
        phase said CANCELLED all along), and whether any release failed."""
        if all(c.phase in TERMINAL_COMPONENT_PHASES for c in self.session.components):
            return  # said already, in an earlier pass
        failed = [p.name for p in self.parts if p.phase is ComponentPhase.FAILED]
        if failed:
            self.note(
                None,
                MessageLevel.ERROR,
                "Released after the cancel, but releasing {names} failed",
                names=", ".join(failed),
            )
        else:
            self.note(None, MessageLevel.INFO, "Everything was released after the cancel")

    async def run(self) -> Advance:
        for _ in range(_MAX_ROUNDS):
            self.progress = False
            for part in self.parts:
                await self.step(part)
            if not self.progress:
                break
        self.connector_status()
        phase = derive_session_phase(
            seen=True,
            ending=self.ending,
            components=[(p.role, p.phase) for p in self.parts],
        )
        releasing = still_releasing(self.ending, [p.phase for p in self.parts])
        if self.ending is SessionPhase.CANCELLED and not releasing:
            self.released_after_cancel()
        dues = [p.due for p in self.parts if not p.ended and p.due is not None]
        return Advance(
            session_uuid=self.session.uuid,
            revision=self.session.revision,
            phase=phase,
            releasing=releasing,
            next_due=min(dues) if dues else None,
            ending=self.ending,
            warned=self.warned,
            connectors=self.connectors,
            components=[p.change() for p in self.parts if p.changed()],
            messages=self.messages,
            deferred=frozenset(self.deferred),
        )


async def advance(
    session: SessionRecord,
    platform: Platform,
    *,
    now: datetime,
    timings: EngineTimings,
    clock: Clock | None = None,
) -> Advance:
    """One pass of the engine over ``session`` at ``now``; ``clock`` stamps its messages
    with when each thing happened (else with ``now``)."""
    return await _Pass(session, platform, now, timings, clock).run()
