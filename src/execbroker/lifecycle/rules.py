"""DESIGN §3, the lifecycle rules, as pure functions: each rule takes a component, what it
depends on, the time and the engine's timings, and returns a **decision**. Nothing here
calls a platform or writes anything: :mod:`execbroker.lifecycle.apply` applies decisions
and makes the platform calls they ask for.

The rules, and the function that codes each (``docs/development.md`` adds the tests):

1. **Storage and the executable** start preparing at their planned prepare start, which the
   planner puts at accept (or later, for a session that starts days ahead): :func:`start`,
   for a component that needs nothing.
2. **Data** waits for its prepare start, then fails at once if its storage is not AVAILABLE:
   :func:`start` with the storage as its dependency (:mod:`execbroker.model.graph`).
3. **Compute** waits likewise for the executable and everything it mounts: :func:`start`.
   *Exception (not in DESIGN, see ``docs/architecture.md``):* a dependency that can still be
   ready in time through no fault of the platform's is waited for, not failed:
   :func:`still_coming`. It is preparing within its budget (it started late, or it overruns
   by less than the budget's slack: the grace applies at the dependent's check too), or it
   has not started because its own start has not come or because what *it* needs is still
   coming (transitively).
4. **Prepare budget:** a component still preparing when its planned preparing time plus the
   slack has passed since it started is cancelled, and with it the session:
   :func:`prepare_budget`. It is judged when a poll answers; while the platform cannot be
   reached, the component waits (:func:`unreachable`), as that is not its fault. *Beyond
   DESIGN:* a component the platform holds in its queue (Skaha's Kueue: Pending without a
   start time) has the queue budget instead, counted from its start; once admitted, its
   preparing budget counts from the admission (:func:`budget_deadline`,
   :func:`queue_change`). Both moments are kept on the component, and said in its messages.
5. **Run end:** the executable's exit (:func:`exited`; 0 is COMPLETED, else FAILED), the
   offered time running out (:func:`time_up`), or a user's cancel end the run; then every
   component is released in order (:func:`may_release`: compute first, then the executable
   and data, then each storage after the data it holds) with its outcome
   (:func:`release_outcome`). A component not yet started when the run ends is cancelled
   (:func:`start`); one preparing is released CANCELLED (:func:`preparing`).
6. **End warning:** an interactive session warns its user ``end_warning`` before its end:
   :func:`end_warning`.

Beyond DESIGN, two rules keep what happened true across a crash: **commit the reason before
asking for a release** (a release whose reason the platform cannot tell back, a failure, a
cancel or time up, is committed first and asked for on the next pass; a component the
platform never had ends at once: :func:`release_step`, :func:`fail_step`); and **any failure
ends the session FAILED** after the rest is released (:func:`failure_ending`,
:func:`released`).

Platform answers are decisions too: :func:`on_status` (while preparing or up) and
:func:`released` (while releasing). **An end the broker did not ask for is a failure**
(issue 17): a component the platform is releasing, has released or no longer has, while the
broker had not asked to release it, fails the session, unless the platform says the
executable had exited first (:func:`ended_by_platform`). The broker commits every release of
the compute before asking for it (:func:`release_step`), so a poll never meets a release of
its own. A volume mount follows its compute: :func:`volume_phase`.
The session's own phase is derived from its components by
:func:`execbroker.model.phases.derive_session_phase`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from execbroker.model.isotime import format_duration, format_instant
from execbroker.model.phases import (
    TERMINAL_COMPONENT_PHASES,
    ComponentPhase,
    MessageLevel,
    SessionPhase,
)
from execbroker.model.records import ComponentRecord, ComponentRole, Schedule
from execbroker.platforms.base import PlatformState, PlatformStatus

__all__ = [
    "ADMITTED",
    "QUEUED",
    "Action",
    "Become",
    "Call",
    "Decision",
    "Dependency",
    "Ending",
    "EngineTimings",
    "Fail",
    "Note",
    "Release",
    "ReleaseStep",
    "Wait",
    "budget_deadline",
    "end_warning",
    "ended_by_platform",
    "exited",
    "fail_step",
    "failure_ending",
    "may_release",
    "next_look",
    "on_status",
    "prepare_budget",
    "preparing",
    "queue_change",
    "release_outcome",
    "release_step",
    "released",
    "run_end",
    "start",
    "still_coming",
    "time_up",
    "unreachable",
    "up",
    "volume_phase",
]


@dataclass(frozen=True)
class EngineTimings:
    """The engine's timings: how long past its budget a component may run, how often it polls, when
    it warns of the end, and how long one platform call may take.
    """

    budget_slack: timedelta = timedelta(seconds=60)
    # How long a component may wait in the platform's queue before it is admitted.
    queue_budget: timedelta = timedelta(minutes=30)
    poll_interval: timedelta = timedelta(seconds=5)
    end_warning: timedelta = timedelta(minutes=5)
    # Longest a platform call may take: shorter than the engine's lease, so that a step
    # never outlives its claim. A call cut off is tried again, like an unreachable platform.
    call_deadline: timedelta = timedelta(seconds=30)


# ---------------------------------------------------------------------- decisions


class Action(StrEnum):
    """What the engine may ask a platform to do with a component."""

    PREPARE = "prepare"
    POLL = "poll"
    RELEASE = "release"


@dataclass(frozen=True)
class Note:
    """A message to add: to the component, or to the session (``session=True``)."""

    level: MessageLevel
    template: str
    values: Mapping[str, object] = field(default_factory=dict)
    session: bool = False


@dataclass(frozen=True)
class Ending:
    """The run is over: the session ends ``phase`` once everything is released. The first
    ending decided stands (a FAILED outranks a later one).
    """

    phase: SessionPhase
    note: Note


@dataclass(frozen=True)
class Wait:
    """Nothing to do until ``until`` (None: until something else changes)."""

    until: datetime | None


@dataclass(frozen=True)
class Call:
    """Ask the platform to ``action`` the component; its answer goes to :func:`on_status`
    (or :func:`released`). ``warning`` is said first, and marks the session warned.
    """

    action: Action
    warning: Note | None = None


@dataclass(frozen=True)
class Become:
    """The component is now ``phase``; look at it again at ``due``."""

    phase: ComponentPhase
    due: datetime | None
    notes: tuple[Note, ...] = ()
    platform_notes: bool = False  # keep what the platform found worth saying (a checksum)
    ending: Ending | None = None
    outcome: ComponentPhase | None = None
    # The platform's queue: when the component was first seen in it, and out of it again.
    queued_at: datetime | None = None
    admitted_at: datetime | None = None


@dataclass(frozen=True)
class Fail:
    """The component failed, and with it the session: released if it started, then FAILED.
    ``ending`` says why the session failed (None: :func:`failure_ending`).
    """

    note: Note
    ending: Ending | None = None


@dataclass(frozen=True)
class Release:
    """Release the component, which ends ``outcome`` (FAILED wins over an earlier outcome;
    any other keeps it). ``ending`` is the run's end this decides; ``defer`` commits the
    decision before the platform is asked; ``already``: the platform is releasing it
    already, and its answer is the release's.
    """

    outcome: ComponentPhase
    ending: Ending | None = None
    notes: tuple[Note, ...] = ()
    platform_notes: bool = False
    defer: bool = False
    exit_code: int | None = None
    already: bool = False


Decision = Wait | Call | Become | Fail | Release


class ReleaseStep(StrEnum):
    """How a decided release proceeds (:func:`release_step`)."""

    END = "end"  # nothing on the platform: the component ends at once
    COMMIT_FIRST = "commit-first"  # RELEASING now; the platform is asked on the next pass
    ASK_NOW = "ask-now"  # the platform is asked in this pass


@dataclass(frozen=True)
class Dependency:
    """A component another one needs, as it is now, and whether it is still coming."""

    component: ComponentRecord
    coming: bool


# ---------------------------------------------------------------------- rules 1-3: start


def start(
    component: ComponentRecord,
    dependencies: Sequence[Dependency],
    *,
    ending: SessionPhase | None,
    now: datetime,
    timings: EngineTimings,
) -> Decision:
    """Rules 1-3: a component starts preparing at its prepare start, once everything it
    needs is AVAILABLE; it fails at once if something it needs is not, unless that is
    still coming (:func:`still_coming`). Once the run has ended it never starts.
    """
    if ending is not None:
        return Become(
            ComponentPhase.CANCELLED,
            None,
            (Note(MessageLevel.INFO, "Not started: the session ended first"),),
            outcome=ComponentPhase.CANCELLED,
        )
    begin = component.schedule.prepare_start
    if now < begin:
        return Wait(begin)
    if any(d.coming for d in dependencies):
        # Not ready through no fault of the platform's: wait for it to have had its time.
        return Wait(now + timings.poll_interval)
    missing = [
        d.component for d in dependencies if d.component.phase is not ComponentPhase.AVAILABLE
    ]
    if missing:
        return Fail(
            Note(
                MessageLevel.ERROR,
                "{name} cannot start: {missing} not AVAILABLE at its prepare start",
                {
                    "name": component.name,
                    "missing": ", ".join(
                        f"{c.role.value} '{c.name}' is {c.phase.value}" for c in missing
                    ),
                },
            )
        )
    return Call(Action.PREPARE)


def still_coming(
    dependency: ComponentRecord,
    *,
    needs: Callable[[ComponentRecord], Sequence[ComponentRecord]],
    now: datetime,
    timings: EngineTimings,
) -> bool:
    """The late-dependency exception to rules 2-3: whether ``dependency``, not AVAILABLE,
    may still be ready through no fault of the platform's, so that what needs it waits
    instead of failing.

    - Preparing, within its budget (:func:`budget_deadline`): it started late (the broker
      was down, the offer was accepted close to its start), or it overruns by less than the
      budget's slack. The grace a component has for itself holds for what needs it too (D4):
      past its budget it is cancelled itself, and the session with it.
    - Not started, because its own start has not come, or because something *it* needs is
      still coming: transitively, so a data resource waiting behind a late storage makes its
      compute wait too (D3).
    """
    match dependency.phase:
        case ComponentPhase.PREPARING:
            return now < budget_deadline(dependency, now=now, timings=timings)
        case ComponentPhase.INITIALIZING | ComponentPhase.WAITING:
            if now < dependency.schedule.prepare_start:
                return True
            return any(
                still_coming(needed, needs=needs, now=now, timings=timings)
                for needed in needs(dependency)
            )
        case _:
            return False


# ---------------------------------------------------------------------- rule 4: budget


QUEUED = "{name} is queued since {since}, waiting for the cluster to admit it: {reason}"
ADMITTED = "{name} was admitted by the cluster after {waited} in its queue"


def _prepare_budget(component: ComponentRecord, timings: EngineTimings) -> timedelta:
    return component.schedule.prepare_duration + timings.budget_slack


def budget_deadline(
    component: ComponentRecord, *, now: datetime, timings: EngineTimings
) -> datetime:
    """When a preparing component's budget runs out. Its planned preparing time plus slack,
    counted from when it actually started preparing; while it waits in the platform's queue,
    the queue budget from then instead; once admitted, the preparing budget from its admission.
    """
    started = component.started_at or now
    if component.admitted_at is not None:
        return component.admitted_at + _prepare_budget(component, timings)
    if component.queued_at is not None:
        return started + timings.queue_budget
    return started + _prepare_budget(component, timings)


def preparing(*, ending: SessionPhase | None) -> Decision:
    """A preparing component is polled; once the run has ended, it is released CANCELLED."""
    if ending is not None:
        return Release(ComponentPhase.CANCELLED)
    return Call(Action.POLL)


def queue_change(
    component: ComponentRecord, *, queued: bool, reason: str | None, now: datetime
) -> Become | None:
    """What changes, once each, with the platform's queue: the component is seen waiting in
    it (and so has the queue budget), or seen out of it after that (admitted: its preparing
    budget counts from now). Each is said in a message and kept on the component.
    """
    if component.phase is not ComponentPhase.PREPARING:
        return None
    if queued and component.queued_at is None:
        note = Note(
            MessageLevel.INFO,
            QUEUED,
            {
                "name": component.name,
                "since": format_instant(now),
                "reason": reason or "the platform holds it in its queue",
            },
        )
        return Become(ComponentPhase.PREPARING, None, (note,), queued_at=now)
    if not queued and component.queued_at is not None and component.admitted_at is None:
        note = Note(
            MessageLevel.INFO,
            ADMITTED,
            {"name": component.name, "waited": format_duration(now - component.queued_at)},
        )
        return Become(ComponentPhase.PREPARING, None, (note,), admitted_at=now)
    return None


def prepare_budget(
    component: ComponentRecord,
    *,
    next_check: datetime,
    now: datetime,
    timings: EngineTimings,
    queued: bool = False,
    reason: str | None = None,
) -> Decision:
    """Rule 4: the platform says it is still preparing (``queued``: still in its queue, for
    ``reason``). Past its budget it is cancelled, and so is the session; else it is looked
    at again by its deadline at the latest, saying first that it is queued or admitted.
    """
    change = queue_change(component, queued=queued, reason=reason, now=now)
    if change is not None:
        view = dataclasses.replace(
            component,
            queued_at=change.queued_at or component.queued_at,
            admitted_at=change.admitted_at,
        )
        deadline = budget_deadline(view, now=now, timings=timings)
        return dataclasses.replace(change, due=min(next_check, deadline))
    deadline = budget_deadline(component, now=now, timings=timings)
    if now < deadline:
        return Wait(min(next_check, deadline))
    in_queue = component.queued_at is not None and component.admitted_at is None
    budget = timings.queue_budget if in_queue else _prepare_budget(component, timings)
    template = (
        "{name} was still waiting in the platform's queue after its queue budget of "
        "{budget}; cancelled"
        if in_queue
        else "{name} was still preparing after its budget of {budget}; cancelled"
    )
    return Release(
        ComponentPhase.CANCELLED,
        ending=Ending(
            SessionPhase.CANCELLED,
            Note(
                MessageLevel.INFO,
                "The session was cancelled: {name} did not become ready in time",
                {"name": component.name},
                session=True,
            ),
        ),
        notes=(
            Note(
                MessageLevel.WARN,
                template,
                {"name": component.name, "budget": format_duration(budget)},
            ),
        ),
    )


def unreachable(*, now: datetime, retry_after: timedelta | None, timings: EngineTimings) -> Wait:
    """The platform cannot be reached, or a call to it ran out of time: not the component's
    fault. It stays where it is (its budget is not judged) and the step is tried again.
    """
    return Wait(now + (retry_after or timings.poll_interval))


# ---------------------------------------------------------------------- rule 5: run end


def run_end(compute: Schedule) -> datetime:
    """When the offered time runs out."""
    return compute.available_start + compute.available_duration


def time_up(end: datetime, *, now: datetime) -> Release | None:
    """Rule 5: the offered time is up, so the run completes. Committed before the platform
    is asked, like a cancel, so that an extension that landed first (a newer revision)
    undoes it instead of being lost.
    """
    if now < end:
        return None
    return Release(
        ComponentPhase.COMPLETED,
        ending=Ending(
            SessionPhase.COMPLETED,
            Note(
                MessageLevel.INFO,
                "The offered time ended at {end}; releasing",
                {"end": format_instant(end)},
                session=True,
            ),
        ),
        defer=True,
    )


def end_warning(
    end: datetime, *, interactive: bool, warned: bool, now: datetime, timings: EngineTimings
) -> Note | None:
    """DESIGN §3 rule 6: an interactive session warns its user before its end, because an
    open notebook stops working when its platform session is deleted.
    """
    if not interactive or warned or now < end - timings.end_warning:
        return None
    return Note(
        MessageLevel.WARN,
        "This session will be released at {end}: save your work before then",
        {"end": format_instant(end)},
        session=True,
    )


def next_look(
    component: ComponentRecord,
    *,
    end: datetime,
    next_check: timedelta | None,
    interactive: bool,
    warned: bool,
    now: datetime,
    timings: EngineTimings,
) -> datetime | None:
    """When a component that is up needs looking at again: only the compute, at the
    platform's next check, its end warning or its end, whichever comes first; the others
    wait for the run to end.
    """
    if component.role is not ComponentRole.COMPUTE:
        return None
    due = min(end, now + (timings.poll_interval if next_check is None else next_check))
    if interactive and not warned:
        due = min(due, max(now, end - timings.end_warning))
    return due


def up(
    component: ComponentRecord,
    *,
    ending: SessionPhase | None,
    release_after: Sequence[ComponentRecord],
    end: datetime,
    interactive: bool,
    warned: bool,
    now: datetime,
    timings: EngineTimings,
) -> Decision:
    """A component that is AVAILABLE or RUNNING: once the run has ended, released in its
    turn (:func:`may_release`); until then the compute is watched until its time is up,
    with a warning before its end, and the others wait.
    """
    if ending is not None:
        if not may_release(release_after):
            return Wait(None)  # its turn comes when what it waits for has ended
        return Release(release_outcome(component, ending))
    if component.role is not ComponentRole.COMPUTE:
        return Wait(None)
    over = time_up(end, now=now)
    if over is not None:
        return over
    warning = end_warning(end, interactive=interactive, warned=warned, now=now, timings=timings)
    return Call(Action.POLL, warning)


def exited(code: int) -> Release:
    """Rule 5: the executable exited; 0 completes the run, anything else fails it."""
    if code == 0:
        return Release(
            ComponentPhase.COMPLETED,
            ending=Ending(
                SessionPhase.COMPLETED, Note(MessageLevel.INFO, "The run completed", session=True)
            ),
            notes=(Note(MessageLevel.INFO, "The executable exited with code 0"),),
            platform_notes=True,
            exit_code=0,
        )
    return Release(
        ComponentPhase.FAILED,
        ending=Ending(
            SessionPhase.FAILED,
            Note(
                MessageLevel.ERROR,
                "The run failed: exit code {code}",
                {"code": code},
                session=True,
            ),
        ),
        notes=(
            Note(
                MessageLevel.ERROR,
                "The executable exited with code {code}{reason}",
                {"code": code, "reason": " (killed: out of memory?)" if code == 137 else ""},
            ),
        ),
        platform_notes=True,
        exit_code=code,
    )


def may_release(release_after: Sequence[ComponentRecord]) -> bool:
    """Rule 5, release order: a component is released once everything it must outlive has
    ended (:meth:`~execbroker.model.graph.SessionGraph.release_after`: the compute first,
    then the executable and data, then each storage after the data it holds).
    """
    return all(c.phase in TERMINAL_COMPONENT_PHASES for c in release_after)


def release_outcome(component: ComponentRecord, ending: SessionPhase) -> ComponentPhase:
    """How a component released at the run's end ends: as what already happened to it,
    else CANCELLED for the compute of a cancelled run, else COMPLETED.
    """
    if component.outcome is not None:
        return component.outcome
    if ending is SessionPhase.CANCELLED and component.role is ComponentRole.COMPUTE:
        return ComponentPhase.CANCELLED
    return ComponentPhase.COMPLETED


def release_step(
    component: ComponentRecord,
    outcome: ComponentPhase,
    *,
    ending: SessionPhase | None,
    defer: bool,
) -> ReleaseStep:
    """The commit-first rule: a component the platform never had ends at once. A release
    whose reason the platform cannot tell back after a crash (a failure, a cancel, time up:
    anything but a completed run) is committed as RELEASING first, and the platform is asked
    on the next pass; else a crash in between would leave only a release to read back, which
    looks like a normal ending. So is every release of the compute, the one component polled
    while it is up: a poll that finds it ending then always meets an end the broker did not
    ask for (:func:`ended_by_platform`), never one of its own lost in a crash. Any other
    component's normal completion is asked for at once.
    """
    if component.started_at is None:
        return ReleaseStep.END
    if (
        defer
        or component.role is ComponentRole.COMPUTE
        or outcome is not ComponentPhase.COMPLETED
        or ending is not SessionPhase.COMPLETED
    ):
        return ReleaseStep.COMMIT_FIRST
    return ReleaseStep.ASK_NOW


def fail_step(component: ComponentRecord) -> ReleaseStep:
    """A failed component ends FAILED at once if the platform never had it or it was being
    released already; else its failure is committed before its release is asked for.
    """
    if component.started_at is None or component.phase is ComponentPhase.RELEASING:
        return ReleaseStep.END
    return ReleaseStep.COMMIT_FIRST


def failure_ending(component: ComponentRecord) -> Ending:
    """Any failure ends the session FAILED, after the rest is released."""
    return Ending(
        SessionPhase.FAILED,
        Note(
            MessageLevel.ERROR,
            "The session failed: {name} failed",
            {"name": component.name},
            session=True,
        ),
    )


# ---------------------------------------------------------------------- platform answers


def on_status(
    component: ComponentRecord,
    status: PlatformStatus,
    *,
    end: datetime,
    interactive: bool,
    warned: bool,
    now: datetime,
    timings: EngineTimings,
) -> Decision:
    """What the platform's answer about a preparing or running component decides."""

    def look_again() -> datetime | None:
        return next_look(
            component,
            end=end,
            next_check=status.next_check,
            interactive=interactive,
            warned=warned,
            now=now,
            timings=timings,
        )

    name = {"name": component.name}
    match status.state:
        case PlatformState.PREPARING:
            next_check = now + (status.next_check or timings.poll_interval)
            return prepare_budget(
                component,
                next_check=next_check,
                now=now,
                timings=timings,
                queued=status.queued,
                reason=status.message,
            )
        case PlatformState.READY:
            if component.phase is ComponentPhase.AVAILABLE:
                return Become(ComponentPhase.AVAILABLE, look_again())
            return _admitted(
                component,
                Become(
                    ComponentPhase.AVAILABLE,
                    look_again(),
                    (Note(MessageLevel.INFO, "{name} is available", name),),
                    platform_notes=True,
                ),
                now=now,
            )
        case PlatformState.RUNNING:
            notes: tuple[Note, ...] = ()
            if component.phase is not ComponentPhase.RUNNING:
                notes = (Note(MessageLevel.INFO, "{name} is running", name),)
            return _admitted(
                component, Become(ComponentPhase.RUNNING, look_again(), notes), now=now
            )
        case PlatformState.EXITED:
            return exited(status.exit_code or 0)
        case PlatformState.FAILED:
            return Fail(
                Note(
                    MessageLevel.ERROR,
                    "{name} failed on the platform: {error}",
                    {**name, "error": status.message or "no reason given"},
                )
            )
        case PlatformState.RELEASING | PlatformState.RELEASED | PlatformState.MISSING:
            return ended_by_platform(component, status)


def _admitted(component: ComponentRecord, decision: Become, *, now: datetime) -> Become:
    """A component that was queued and is up before it was seen admitted: say it was."""
    admission = queue_change(component, queued=False, reason=None, now=now)
    if admission is None:
        return decision
    return dataclasses.replace(
        decision, notes=(*admission.notes, *decision.notes), admitted_at=admission.admitted_at
    )


_ENDED_HOW = {
    PlatformState.RELEASING: "it is being ended",
    PlatformState.RELEASED: "it has ended",
    PlatformState.MISSING: "it is gone",
}


def ended_by_platform(component: ComponentRecord, status: PlatformStatus) -> Decision:
    """An end the broker did not ask for is a failure (issue 17, on every platform): the
    platform is releasing, has released or no longer has a component that the broker has
    not decided to release (a preempted or evicted job, a drained node, an administrator).
    The broker commits a release before it asks for it (:func:`release_step`), so this end
    is not its own: the component fails with what the platform says (its events and log
    tail, where it has them), and the session with it.

    Unless the platform says the executable had exited first: its exit code decides
    (:func:`exited`; 0 completes the run, and the release that followed is taken over).
    """
    name = {"name": component.name}
    if status.exit_code not in (None, 0):
        return exited(status.exit_code)
    if status.exit_code == 0 and status.state is not PlatformState.MISSING:
        return Release(
            ComponentPhase.COMPLETED,
            ending=Ending(
                SessionPhase.COMPLETED, Note(MessageLevel.INFO, "The run completed", session=True)
            ),
            notes=(
                Note(MessageLevel.INFO, "The executable exited with code 0"),
                Note(MessageLevel.INFO, "{name} was already being released", name),
            ),
            exit_code=0 if component.role is ComponentRole.COMPUTE else None,
            already=True,
        )
    return Fail(
        Note(
            MessageLevel.ERROR,
            "{name} was ended by the platform, not by the broker ({how}): {reason}",
            {
                **name,
                "how": _ENDED_HOW.get(status.state, status.state.value),
                "reason": status.message or "the platform gave no reason",
            },
        ),
        ending=Ending(
            SessionPhase.FAILED,
            Note(
                MessageLevel.ERROR,
                "The session failed: {name} was ended by the platform",
                name,
                session=True,
            ),
        ),
    )


def released(
    component: ComponentRecord, status: PlatformStatus, *, now: datetime, timings: EngineTimings
) -> Decision:
    """What the platform's answer to a release decides: released (or gone) ends the
    component as decided; a failed release fails it and the session; else look again.
    """
    name = {"name": component.name}
    match status.state:
        case PlatformState.RELEASED | PlatformState.MISSING:
            return Become(
                component.outcome or ComponentPhase.COMPLETED,
                None,
                (Note(MessageLevel.INFO, "{name} released", name),),
            )
        case PlatformState.FAILED:
            return Become(
                ComponentPhase.FAILED,
                None,
                (
                    Note(
                        MessageLevel.ERROR,
                        "Releasing {name} failed: {error}",
                        {**name, "error": status.message or "no reason given"},
                    ),
                ),
                ending=Ending(
                    SessionPhase.FAILED,
                    Note(
                        MessageLevel.ERROR,
                        "The session failed while releasing {name}",
                        name,
                        session=True,
                    ),
                ),
                outcome=ComponentPhase.FAILED,
            )
        case _:
            return Wait(now + (status.next_check or timings.poll_interval))


def volume_phase(volume: ComponentRecord, compute: ComponentRecord | None) -> ComponentPhase | None:
    """A volume mount follows its compute (None: it stays as it is). A compute that failed
    after it started leaves its mounts COMPLETED (they did their part); one that failed
    before it started leaves them CANCELLED.
    """
    if compute is None:
        return ComponentPhase.CANCELLED
    if compute.phase is ComponentPhase.FAILED and compute.started_at is None:
        return ComponentPhase.CANCELLED
    return _MIRROR.get(compute.phase)


_MIRROR = {
    ComponentPhase.PREPARING: ComponentPhase.PREPARING,
    ComponentPhase.AVAILABLE: ComponentPhase.AVAILABLE,
    ComponentPhase.RUNNING: ComponentPhase.AVAILABLE,
    ComponentPhase.RELEASING: ComponentPhase.RELEASING,
    ComponentPhase.COMPLETED: ComponentPhase.COMPLETED,
    ComponentPhase.FAILED: ComponentPhase.COMPLETED,
    ComponentPhase.CANCELLED: ComponentPhase.CANCELLED,
}
