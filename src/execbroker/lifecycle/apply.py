"""One engine pass over one session: apply the lifecycle rules' decisions, call platforms.

:func:`advance` looks at every component whose time has come (or whose circumstances
changed), asks :mod:`execbroker.lifecycle.rules` what to do with it, and does it: it moves
phases, adds messages, and makes the platform calls the decisions ask for (through
:class:`~execbroker.lifecycle.rules.Action`). It decides nothing itself. It returns what
changed, as an :class:`~execbroker.model.advance.Advance` that the engine commits.

Platform calls are idempotent by component, so running :func:`advance` again after a crash
adopts what was already started instead of starting it twice. Every call has a deadline
(``EngineTimings.call_deadline``), and a whole pass has one too (``budget``): a call cut off,
or not made because the pass is out of time, is tried again on a later pass, like a call to
an unreachable platform. So a pass never outlives the claim the engine holds on its session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from execbroker.clock import Clock
from execbroker.lifecycle import rules
from execbroker.lifecycle.rules import (
    Action,
    Become,
    Call,
    Decision,
    Dependency,
    Ending,
    EngineTimings,
    Fail,
    Note,
    Release,
    ReleaseStep,
    Wait,
)
from execbroker.model import kinds
from execbroker.model.advance import Advance, ComponentChange
from execbroker.model.graph import SessionGraph
from execbroker.model.isotime import format_instant
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
    PlatformStatus,
    PlatformUnavailableError,
    Work,
)

__all__ = ["advance"]

logger = logging.getLogger(__name__)

# Dependencies first, so that one pass can carry a session from storage to compute.
_ORDER = (
    ComponentRole.STORAGE,
    ComponentRole.EXECUTABLE,
    ComponentRole.DATA,
    ComponentRole.COMPUTE,
    ComponentRole.VOLUME,
)

# A pass goes over the components in rounds until a round changes nothing: a decision about
# one component can make another's rule apply at once (the compute exits, so the executable
# and storage, looked at earlier in the round, may now be released). A round that changes
# something moves a component one phase on, or settles the session's ending or warning, so
# the rounds end by themselves: across tests/lifecycle no pass takes more than four (three
# that change something, then one that finds nothing left). The bound is for a platform that
# keeps answering "look again now" about a component: it is polled at most this many times
# in one pass, then again on the next pass.
_MAX_ROUNDS = 12


class _Component:
    """A component's working state during one pass."""

    def __init__(self, record: ComponentRecord) -> None:
        self.record = record
        self.phase = record.phase
        self.due = record.due
        self.outcome = record.outcome
        self.started_at = record.started_at
        self.exit_code = record.exit_code
        self.queued_at = record.queued_at
        self.admitted_at = record.admitted_at
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

    def view(self) -> ComponentRecord:
        """The component as it is now in this pass: what the rules look at."""
        return dataclasses.replace(
            self.record,
            phase=self.phase,
            due=self.due,
            outcome=self.outcome,
            started_at=self.started_at,
            exit_code=self.exit_code,
            queued_at=self.queued_at,
            admitted_at=self.admitted_at,
        )

    def changed(self) -> bool:
        r = self.record
        return bool(self.messages) or (
            (self.phase, self.due, self.outcome, self.started_at, self.exit_code)
            != (r.phase, r.due, r.outcome, r.started_at, r.exit_code)
            or (self.queued_at, self.admitted_at) != (r.queued_at, r.admitted_at)
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
            queued_at=self.queued_at,
            admitted_at=self.admitted_at,
        )


class _Pass:
    def __init__(
        self,
        session: SessionRecord,
        platform: Platform,
        *,
        now: datetime,
        timings: EngineTimings,
        clock: Clock | None,
        budget: timedelta | None,
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
        self.by_uuid: dict[UUID, _Component] = {p.record.uuid: p for p in self.parts}
        self.graph = SessionGraph.of(session)
        self.compute = next((p for p in self.parts if p.role is ComponentRole.COMPUTE), None)
        self.end = rules.run_end(self.compute.record.schedule if self.compute else session.schedule)
        executable = session.component(ComponentRole.EXECUTABLE)
        self.interactive = executable is not None and executable.kind == kinds.EXECUTABLE_JUPYTER
        self.progress = False
        # Releases decided in this pass whose platform call waits for the next one.
        self.deferred: set[UUID] = set()
        loop = asyncio.get_running_loop()
        self.give_up_at = None if budget is None else loop.time() + budget.total_seconds()

    # -- applying decisions -----------------------------------------------------------

    def note(self, part: _Component | None, note: Note) -> None:
        # Stamped when it happened: after a slow platform call, later than the pass began.
        item = make_message(
            note.level,
            note.template,
            dict(note.values),
            time=self.clock.now() if self.clock else self.now,
        )
        (self.messages if note.session or part is None else part.messages).append(item)

    def platform_notes(self, part: _Component, status: PlatformStatus | None) -> None:
        """What the platform found worth keeping (a checksum, the run's last output)."""
        for item in status.notes if status else ():
            part.messages.append(
                make_message(item.level, item.template, item.values, time=self.now)
            )

    def end_run(self, ending: Ending | None) -> None:
        """The run is over; the first ending decided stands (a FAILED outranks a later one)."""
        if ending is None:
            return
        if self.ending is None:
            self.ending = ending.phase
            self.note(None, ending.note)
        self.progress = True

    def move(self, part: _Component, phase: ComponentPhase, due: datetime | None = None) -> None:
        if part.phase is not phase:
            part.phase = phase
            self.progress = True
        part.due = due

    async def apply(
        self, part: _Component, decision: Decision, status: PlatformStatus | None = None
    ) -> None:
        match decision:
            case Wait(until=until):
                part.due = until
            case Become():
                for note in decision.notes:
                    self.note(part, note)
                if decision.platform_notes:
                    self.platform_notes(part, status)
                if decision.outcome is not None:
                    part.outcome = decision.outcome
                part.queued_at = decision.queued_at or part.queued_at
                part.admitted_at = decision.admitted_at or part.admitted_at
                self.end_run(decision.ending)
                self.move(part, decision.phase, decision.due)
            case Fail(note=note, ending=ending):
                self.fail(part, note, ending)
            case Release():
                await self.release(part, decision, status)
            case Call(action=Action.PREPARE):
                found = await self.call(part, Action.PREPARE)
                if found is None:
                    return
                part.started_at = self.now
                self.note(part, Note(MessageLevel.INFO, "Preparing {name}", {"name": part.name}))
                self.move(part, ComponentPhase.PREPARING, self.now)
                await self.answer(part, found)
            case Call(action=Action.POLL, warning=warning):
                if warning is not None:
                    self.warn(warning)
                found = await self.call(part, Action.POLL)
                if found is not None:
                    await self.answer(part, found)
            case Call(action=Action.RELEASE):
                found = await self.call(part, Action.RELEASE)
                if found is not None:
                    await self.apply(part, self.released(part, found), found)

    async def answer(self, part: _Component, status: PlatformStatus) -> None:
        """Take in what the platform says about a preparing or running component."""
        if status.connectors and part.role is ComponentRole.COMPUTE:
            self.publish_connectors(status.connectors)
        decision = rules.on_status(
            part.view(),
            status,
            end=self.end,
            interactive=self.interactive,
            warned=self.warned,
            now=self.now,
            timings=self.timings,
        )
        await self.apply(part, decision, status)

    def released(self, part: _Component, status: PlatformStatus) -> Decision:
        return rules.released(part.view(), status, now=self.now, timings=self.timings)

    def fail(self, part: _Component, note: Note, ending: Ending | None = None) -> None:
        """The component failed: release what the platform has of it, end FAILED (as
        ``ending`` says, else :func:`~execbroker.lifecycle.rules.failure_ending`).
        """
        self.note(part, note)
        part.outcome = ComponentPhase.FAILED
        self.end_run(ending or rules.failure_ending(part.view()))
        if rules.fail_step(part.view()) is ReleaseStep.END:
            self.move(part, ComponentPhase.FAILED)
        else:
            self.move(part, ComponentPhase.RELEASING, self.now)
            self.deferred.add(part.record.uuid)

    async def release(
        self, part: _Component, decision: Release, status: PlatformStatus | None
    ) -> None:
        for note in decision.notes:
            self.note(part, note)
        if decision.platform_notes:
            self.platform_notes(part, status)
        if decision.exit_code is not None:
            part.exit_code = decision.exit_code
        if decision.outcome is ComponentPhase.FAILED:
            part.outcome = ComponentPhase.FAILED
        else:
            part.outcome = part.outcome or decision.outcome
        self.end_run(decision.ending)
        if decision.already and status is not None:
            self.move(part, ComponentPhase.RELEASING, self.now)
            await self.apply(part, self.released(part, status), status)
            return
        releasing = Note(MessageLevel.INFO, "Releasing {name}", {"name": part.name})
        match rules.release_step(
            part.view(), part.outcome, ending=self.ending, defer=decision.defer
        ):
            case ReleaseStep.END:
                self.move(part, part.outcome)
            case ReleaseStep.COMMIT_FIRST:
                self.note(part, releasing)
                self.move(part, ComponentPhase.RELEASING, self.now)
                self.deferred.add(part.record.uuid)
            case ReleaseStep.ASK_NOW:
                found = await self.call(part, Action.RELEASE)
                if found is None:
                    return
                self.note(part, releasing)
                self.move(part, ComponentPhase.RELEASING, self.now)
                await self.apply(part, self.released(part, found), found)

    def warn(self, warning: Note) -> None:
        """The end warning: a session message, and each connector says when it ends."""
        self.warned = True
        self.note(None, warning)
        for connector in self.connectors:
            connector["releases"] = format_instant(self.end)
        self.progress = True

    # -- platform calls ---------------------------------------------------------------

    async def call(self, part: _Component, action: Action) -> PlatformStatus | None:
        """Ask the platform; None when there is no answer to act on (the step is tried
        again later, or the component failed).
        """
        work = Work(self.session, part.record)
        deadline = self.timings.call_deadline.total_seconds()
        if self.give_up_at is not None:
            deadline = min(deadline, self.give_up_at - asyncio.get_running_loop().time())
        if deadline <= 0:
            # The pass is out of time: leave the call to a later pass, within its claim.
            part.due = rules.unreachable(now=self.now, retry_after=None, timings=self.timings).until
            return None
        try:
            async with asyncio.timeout(deadline):
                match action:
                    case Action.PREPARE:
                        return await self.platform.prepare(work)
                    case Action.RELEASE:
                        return await self.platform.release(work)
                    case Action.POLL:
                        return await self.platform.poll(work)
        except TimeoutError:
            # Its outcome is unknown: tried again soon (platform calls are idempotent by
            # component, so a create that did arrive is adopted, not made twice).
            logger.warning(
                "platform call timed out; trying again",
                extra={"session": str(self.session.uuid), "action": action.value},
            )
            part.due = rules.unreachable(now=self.now, retry_after=None, timings=self.timings).until
            return None
        except PlatformError as failure:
            self.fail(
                part,
                Note(
                    MessageLevel.ERROR,
                    "The platform refused to {action} {name}: {error}",
                    {"action": action.value, "name": part.name, "error": str(failure)},
                ),
            )
            return None
        except PlatformUnavailableError as unavailable:
            part.due = rules.unreachable(
                now=self.now, retry_after=unavailable.retry_after, timings=self.timings
            ).until
            return None

    # -- asking the rules -------------------------------------------------------------

    def wants_attention(self, part: _Component) -> bool:
        if part.ended or part.record.uuid in self.deferred:
            return False
        if self.ending is not None and part.phase is not ComponentPhase.RELEASING:
            return True
        return part.due is None or part.due <= self.now

    def dependencies(self, part: _Component) -> list[Dependency]:
        return [
            Dependency(
                needed,
                rules.still_coming(needed, needs=self.needs, now=self.now, timings=self.timings),
            )
            for needed in self.needs(part.view())
        ]

    def needs(self, component: ComponentRecord) -> list[ComponentRecord]:
        """What ``component`` needs, as each is now in this pass."""
        return [self.by_uuid[c.uuid].view() for c in self.graph.needs(component)]

    def decide(self, part: _Component) -> Decision | None:
        view = part.view()
        match part.phase:
            case ComponentPhase.INITIALIZING | ComponentPhase.WAITING:
                return rules.start(
                    view,
                    self.dependencies(part),
                    ending=self.ending,
                    now=self.now,
                    timings=self.timings,
                )
            case ComponentPhase.PREPARING:
                return rules.preparing(ending=self.ending)
            case ComponentPhase.AVAILABLE | ComponentPhase.RUNNING:
                return rules.up(
                    view,
                    ending=self.ending,
                    release_after=[
                        self.by_uuid[c.uuid].view() for c in self.graph.release_after(view)
                    ],
                    end=self.end,
                    interactive=self.interactive,
                    warned=self.warned,
                    now=self.now,
                    timings=self.timings,
                )
            case ComponentPhase.RELEASING:
                return Call(Action.RELEASE)
            case _:
                return None

    async def step(self, part: _Component) -> None:
        if not self.wants_attention(part):
            return
        if part.role is ComponentRole.VOLUME:
            self.follow_compute(part)
            return
        decision = self.decide(part)
        if decision is not None:
            await self.apply(part, decision)

    def follow_compute(self, part: _Component) -> None:
        compute = self.compute
        target = rules.volume_phase(part.view(), compute.view() if compute else None)
        if target is not None and target is not part.phase:
            part.started_at = part.started_at or (compute.started_at if compute else None)
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
        phase said CANCELLED all along), and whether any release failed.
        """
        if all(c.phase in TERMINAL_COMPONENT_PHASES for c in self.session.components):
            return  # said already, in an earlier pass
        failed = [p.name for p in self.parts if p.phase is ComponentPhase.FAILED]
        if failed:
            self.note(
                None,
                Note(
                    MessageLevel.ERROR,
                    "Released after the cancel, but releasing {names} failed",
                    {"names": ", ".join(failed)},
                ),
            )
        else:
            self.note(None, Note(MessageLevel.INFO, "Everything was released after the cancel"))

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
    budget: timedelta | None = None,
) -> Advance:
    """One pass of the engine over ``session`` at ``now``; ``clock`` stamps its messages
    with when each thing happened (else with ``now``). ``budget`` bounds the whole pass: no
    platform call is made, or waited for, past it (None: only each call's deadline).
    """
    return await _Pass(
        session, platform, now=now, timings=timings, clock=clock, budget=budget
    ).run()
