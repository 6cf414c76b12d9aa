"""Each lifecycle rule of DESIGN §3 (and each exception), one focused test apiece.

The rules are pure functions (:mod:`execbroker.lifecycle.rules`), called here directly; where
applying their decisions matters, :func:`~execbroker.lifecycle.apply.advance` runs against a
scripted platform on a manual clock. No database, no HTTP, no sleeps (the two call-deadline
tests wait a few hundredths of a second for a deadline to pass, which is what they test).
``docs/development.md`` maps each rule to its function and its test here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4

from execbroker.background import TaskGroup
from execbroker.clock import ManualClock
from execbroker.lifecycle import rules
from execbroker.lifecycle.apply import advance
from execbroker.lifecycle.changes import ChangeFeed
from execbroker.lifecycle.engine import Engine
from execbroker.lifecycle.rules import (
    Action,
    Become,
    Call,
    Dependency,
    EngineTimings,
    Fail,
    Release,
    ReleaseStep,
    Wait,
)
from execbroker.model import kinds
from execbroker.model.advance import Advance
from execbroker.model.graph import SessionGraph
from execbroker.model.phases import ComponentPhase, MessageLevel, SessionPhase
from execbroker.model.records import (
    ComponentRecord,
    ComponentRole,
    Refs,
    Schedule,
    SessionRecord,
)
from execbroker.platforms.base import (
    Platform,
    PlatformState,
    PlatformStatus,
    PlatformUnavailableError,
    Work,
)
from execbroker.storage.store import BrokerStore

T0 = datetime(2030, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)
TIMINGS = EngineTimings(
    budget_slack=60 * S, poll_interval=S, end_warning=300 * S, call_deadline=30 * S
)
R = ComponentRole
P = ComponentPhase


# ---------------------------------------------------------------------- building sessions


def _schedule(prepare_start: datetime, prepare: float, available: float = 600) -> Schedule:
    ready = prepare_start + prepare * S
    return Schedule(prepare_start, prepare * S, ready, available * S, S)


def _component(
    role: ComponentRole,
    name: str,
    *,
    start: datetime = T0,
    prepare: float = 10,
    phase: ComponentPhase = P.WAITING,
    started_at: datetime | None = None,
    refs: Refs | None = None,
    kind: str = "k",
    available: float = 600,
    session: UUID | None = None,
) -> ComponentRecord:
    return ComponentRecord(
        uuid=uuid4(),
        session_uuid=session or uuid4(),
        owner="alice",
        role=role,
        position=0,
        name=name,
        kind=kind,
        spec=(refs or Refs()).fields(),
        description=None,
        phase=phase,
        schedule=_schedule(start, prepare, available),
        created=T0,
        modified=T0,
        started_at=started_at,
    )


def _coming(
    dependency: ComponentRecord,
    *,
    now: datetime,
    needs: Sequence[ComponentRecord] = (),
) -> Dependency:
    return Dependency(
        dependency,
        rules.still_coming(dependency, needs=lambda _: list(needs), now=now, timings=TIMINGS),
    )


@dataclasses.dataclass
class Plan:
    """A whole session: storage, data staged into it, executable, compute mounting the data."""

    storage: float = 10  # planned preparing seconds
    data: float = 5
    executable: float = 5
    compute: float = 5
    run: float = 60  # the offered duration
    start: datetime = T0 + 30 * S  # the offered start (compute available)
    kind: str = kinds.EXECUTABLE_DOCKER


def _session(plan: Plan, *, phase: SessionPhase = SessionPhase.ACCEPTED) -> SessionRecord:
    """A session planned the way build_session plans it: backwards from the offered start."""
    uuid = uuid4()
    compute_start = plan.start - plan.compute * S
    data_start = compute_start - plan.data * S
    storage = _component(
        R.STORAGE, "storage", start=data_start - plan.storage * S, prepare=plan.storage,
        session=uuid,
    )  # fmt: skip
    data = _component(
        R.DATA, "data", start=data_start, prepare=plan.data, session=uuid,
        refs=Refs(storage=storage.uuid),
    )  # fmt: skip
    executable = _component(
        R.EXECUTABLE, "exe", start=compute_start - plan.executable * S, prepare=plan.executable,
        session=uuid, kind=plan.kind,
    )  # fmt: skip
    compute = _component(
        R.COMPUTE, "compute", start=compute_start, prepare=plan.compute, available=plan.run,
        session=uuid,
    )  # fmt: skip
    volume = _component(
        R.VOLUME, "mount", start=compute_start, prepare=plan.compute, session=uuid,
        refs=Refs(resource=data.uuid),
    )  # fmt: skip
    return SessionRecord(
        uuid=uuid,
        owner="alice",
        offer_set_uuid=None,
        position=0,
        phase=phase,
        expires=None,
        schedule=_schedule(storage.schedule.prepare_start, 0, plan.run),
        cores=1,
        memory_gib=1,
        storage_gib=1,
        created=T0,
        modified=T0,
        components=[storage, data, executable, compute, volume],
        seen=True,
    )


class Scripted(Platform):
    """A platform whose components are ready a set time after they start preparing, whose
    compute runs for ``run`` seconds then exits with ``exit_code``; it records every call."""

    name = "scripted"

    def __init__(
        self,
        clock: ManualClock,
        ready_after: dict[str, float] | None = None,
        *,
        run: float = 10,
        exit_code: int = 0,
    ) -> None:
        self.clock = clock
        self.ready_after = {"storage": 0.0, "data": 0.0, "exe": 0.0, "compute": 0.0}
        self.ready_after.update(ready_after or {})
        self.run = run
        self.exit_code = exit_code
        self.started: dict[UUID, datetime] = {}
        self.calls: list[tuple[Action, str]] = []
        self.unreachable = False

    async def prepare(self, work: Work) -> PlatformStatus:
        self.calls.append((Action.PREPARE, work.component.name))
        self.started.setdefault(work.uuid, self.clock.now())
        return self._state(work)

    async def poll(self, work: Work) -> PlatformStatus:
        self.calls.append((Action.POLL, work.component.name))
        if self.unreachable:
            raise PlatformUnavailableError("down", retry_after=7 * S)
        return self._state(work)

    def _state(self, work: Work) -> PlatformStatus:
        elapsed = (self.clock.now() - self.started[work.uuid]).total_seconds()
        ready = self.ready_after[work.component.name]
        if elapsed < ready:
            return PlatformStatus(PlatformState.PREPARING, next_check=S)
        if work.role is not R.COMPUTE:
            return PlatformStatus(PlatformState.READY)
        if elapsed < ready + self.run:
            return PlatformStatus(PlatformState.RUNNING, next_check=S)
        return PlatformStatus(PlatformState.EXITED, exit_code=self.exit_code)

    async def release(self, work: Work) -> PlatformStatus:
        self.calls.append((Action.RELEASE, work.component.name))
        return PlatformStatus(PlatformState.RELEASED)

    async def objects(self) -> set[UUID]:
        return set()

    async def release_orphan(self, uuid: UUID) -> None:
        pass


def _commit(session: SessionRecord, step: Advance) -> SessionRecord:
    """What storage does with an advance, in memory."""
    changes = {c.uuid: c for c in step.components}
    components = [
        dataclasses.replace(
            c,
            phase=changes[c.uuid].phase,
            due=changes[c.uuid].due,
            outcome=changes[c.uuid].outcome,
            started_at=changes[c.uuid].started_at,
            exit_code=changes[c.uuid].exit_code,
            messages=c.messages + changes[c.uuid].messages,
        )
        if c.uuid in changes
        else c
        for c in session.components
    ]
    return dataclasses.replace(
        session,
        phase=step.phase,
        ending=step.ending,
        warned=step.warned,
        connectors=step.connectors,
        messages=session.messages + step.messages,
        components=components,
        next_due=step.next_due,
    )


async def _drive(
    session: SessionRecord, platform: Scripted, clock: ManualClock, *, seconds: int
) -> SessionRecord:
    """One pass a second until the session ends (or ``seconds`` pass)."""
    for _ in range(seconds):
        step = await advance(session, platform, now=clock.now(), timings=TIMINGS)
        session = _commit(session, step)
        ended = (SessionPhase.COMPLETED, SessionPhase.FAILED, SessionPhase.CANCELLED)
        if session.phase in ended and not step.releasing:
            return session
        clock.advance(S)
    return session


def _by_name(session: SessionRecord) -> dict[str, ComponentRecord]:
    return {c.name: c for c in session.components}


def _texts(records: Sequence[ComponentRecord] | SessionRecord) -> str:
    if isinstance(records, SessionRecord):
        return " | ".join(m.message or "" for m in records.messages)
    return " | ".join(m.message or "" for c in records for m in c.messages)


# ---------------------------------------------------------------------- rules 1-3: start


def test_storage_and_the_executable_start_at_their_prepare_start() -> None:
    for role in (R.STORAGE, R.EXECUTABLE):
        component = _component(role, "it", start=T0)
        assert rules.start(component, [], ending=None, now=T0 - S, timings=TIMINGS) == Wait(T0)
        assert rules.start(component, [], ending=None, now=T0, timings=TIMINGS) == Call(
            Action.PREPARE
        )


def test_data_starts_once_its_storage_is_available() -> None:
    storage = _component(R.STORAGE, "storage", phase=P.AVAILABLE)
    data = _component(R.DATA, "data", start=T0 + 10 * S, refs=Refs(storage=storage.uuid))
    now = T0 + 10 * S
    decision = rules.start(data, [_coming(storage, now=now)], ending=None, now=now, timings=TIMINGS)
    assert decision == Call(Action.PREPARE)


def test_data_fails_at_its_start_if_its_storage_is_not_available() -> None:
    # The storage was never started and its own start is long past: nothing is coming.
    storage = _component(R.STORAGE, "storage", phase=P.WAITING, start=T0 - 100 * S)
    data = _component(R.DATA, "data", start=T0)
    decision = rules.start(data, [_coming(storage, now=T0)], ending=None, now=T0, timings=TIMINGS)
    assert isinstance(decision, Fail)
    assert decision.note.level is MessageLevel.ERROR
    assert decision.note.values["missing"] == "storage 'storage' is WAITING"


def test_compute_fails_at_its_start_if_the_executable_is_not_available() -> None:
    executable = _component(R.EXECUTABLE, "exe", phase=P.FAILED, started_at=T0 - 20 * S)
    compute = _component(R.COMPUTE, "compute", start=T0)
    decision = rules.start(
        compute, [_coming(executable, now=T0)], ending=None, now=T0, timings=TIMINGS
    )
    assert isinstance(decision, Fail)
    assert "executable 'exe' is FAILED" in str(decision.note.values["missing"])


def test_compute_needs_the_executable_and_everything_it_mounts() -> None:
    session = _session(Plan())
    parts = _by_name(session)
    graph = SessionGraph.of(session)
    assert [c.name for c in graph.needs(parts["compute"])] == ["exe", "data"]
    assert [c.name for c in graph.needs(parts["data"])] == ["storage"]


def test_nothing_starts_once_the_run_has_ended() -> None:
    component = _component(R.DATA, "data", start=T0)
    decision = rules.start(component, [], ending=SessionPhase.CANCELLED, now=T0, timings=TIMINGS)
    assert isinstance(decision, Become)
    assert decision.phase is P.CANCELLED
    assert decision.outcome is P.CANCELLED


# ---------------------------------------------------------------------- late dependencies


def test_a_dependency_that_started_late_is_waited_for() -> None:
    # Planned to prepare from T0 for 10 s; the broker only started it at T0 + 20 s.
    storage = _component(R.STORAGE, "storage", phase=P.PREPARING, started_at=T0 + 20 * S)
    data = _component(R.DATA, "data", start=T0 + 10 * S)
    now = T0 + 25 * S
    decision = rules.start(data, [_coming(storage, now=now)], ending=None, now=now, timings=TIMINGS)
    assert decision == Wait(now + TIMINGS.poll_interval)


def test_a_dependency_whose_start_has_not_come_is_waited_for() -> None:
    executable = _component(R.EXECUTABLE, "exe", start=T0 + 5 * S)
    assert rules.still_coming(executable, needs=lambda _: [], now=T0, timings=TIMINGS)


def test_lateness_is_transitive_d3() -> None:
    """RULES-DEFECTS D3: the data waits behind a late storage, so the compute waits for the
    data. (The old rule only looked at the dependency itself: data WAITING past its start
    was "not late", and the compute failed at once.)"""
    storage = _component(R.STORAGE, "storage", phase=P.PREPARING, started_at=T0, prepare=10)
    data = _component(R.DATA, "data", start=T0 - 5 * S, refs=Refs(storage=storage.uuid))
    executable = _component(R.EXECUTABLE, "exe", phase=P.AVAILABLE)
    compute = _component(R.COMPUTE, "compute", start=T0)
    now = T0 + 2 * S
    deps = [_coming(executable, now=now), _coming(data, now=now, needs=[storage])]
    assert deps[1].coming
    decision = rules.start(compute, deps, ending=None, now=now, timings=TIMINGS)
    assert decision == Wait(now + TIMINGS.poll_interval)


async def test_an_offer_accepted_late_with_a_slow_storage_runs_d3() -> None:
    """RULES-DEFECTS appendix A through advance(): every planned start is in the past (the
    offer was accepted late), the storage takes 8 s, the executable is ready at once. The
    compute used to fail at once ("data 'data' is WAITING not AVAILABLE")."""
    clock = ManualClock(T0 + 40 * S)  # past the planned start of everything
    session = _session(Plan(storage=10, data=5, executable=5, compute=5))
    platform = Scripted(clock, {"storage": 8}, run=5)
    session = await _drive(session, platform, clock, seconds=60)
    assert session.phase is SessionPhase.COMPLETED, _texts(session.components)
    assert "cannot start" not in _texts(session.components)


# ---------------------------------------------------------------------- rule 4: the budget


def test_a_component_past_its_budget_is_cancelled() -> None:
    exe = _component(R.EXECUTABLE, "exe", phase=P.PREPARING, started_at=T0, prepare=10)
    deadline = T0 + 10 * S + TIMINGS.budget_slack
    within = rules.prepare_budget(exe, next_check=T0 + 30 * S, now=T0 + 20 * S, timings=TIMINGS)
    assert within == Wait(T0 + 30 * S)
    capped = rules.prepare_budget(exe, next_check=T0 + 999 * S, now=T0 + 20 * S, timings=TIMINGS)
    assert capped == Wait(deadline)
    over = rules.prepare_budget(exe, next_check=deadline + S, now=deadline, timings=TIMINGS)
    assert isinstance(over, Release)
    assert over.outcome is P.CANCELLED
    assert over.ending is not None
    assert over.ending.phase is SessionPhase.CANCELLED
    assert over.notes[0].values["budget"] == "PT1M10S"


def test_the_grace_holds_at_the_dependents_check_too_d4() -> None:
    """RULES-DEFECTS D4: a storage that overruns its plan by 3 s is waited for by its data
    (it has 60 s of slack for itself); it used to fail the data, and the session FAILED."""
    storage = _component(R.STORAGE, "storage", phase=P.PREPARING, started_at=T0, prepare=10)
    data = _component(R.DATA, "data", start=T0 + 10 * S)
    now = T0 + 13 * S
    decision = rules.start(data, [_coming(storage, now=now)], ending=None, now=now, timings=TIMINGS)
    assert decision == Wait(now + TIMINGS.poll_interval)
    # Past its budget it is not coming: the data fails (if the storage was not cancelled
    # first, which is what a pass does, storage being looked at before data).
    past = T0 + 10 * S + TIMINGS.budget_slack
    assert isinstance(
        rules.start(data, [_coming(storage, now=past)], ending=None, now=past, timings=TIMINGS),
        Fail,
    )


async def test_a_storage_overrunning_by_3_s_does_not_fail_the_session_d4() -> None:
    clock = ManualClock(T0)
    session = _session(Plan(storage=10))
    platform = Scripted(clock, {"storage": 13}, run=5)
    session = await _drive(session, platform, clock, seconds=120)
    assert session.phase is SessionPhase.COMPLETED, _texts(session.components)


async def test_a_storage_past_its_budget_cancels_the_session_d4() -> None:
    clock = ManualClock(T0)
    session = _session(Plan(storage=10))
    platform = Scripted(clock, {"storage": 10 + 61}, run=5)
    session = await _drive(session, platform, clock, seconds=200)
    parts = _by_name(session)
    assert session.phase is SessionPhase.CANCELLED, _texts(session.components)
    assert parts["storage"].phase is P.CANCELLED
    assert parts["data"].phase is P.CANCELLED
    assert parts["compute"].phase is P.CANCELLED
    assert "cannot start" not in _texts(session.components)


async def test_the_budget_is_not_judged_while_the_platform_is_unreachable() -> None:
    clock = ManualClock(T0)
    exe = _component(R.EXECUTABLE, "exe", phase=P.PREPARING, started_at=T0 - 999 * S)
    exe = dataclasses.replace(exe, due=T0)
    session = dataclasses.replace(_session(Plan()), components=[exe])
    platform = Scripted(clock)
    platform.unreachable = True
    step = await advance(session, platform, now=T0, timings=TIMINGS)
    (change,) = step.components
    assert change.phase is P.PREPARING
    assert change.due == T0 + 7 * S  # the platform's retry_after
    assert step.ending is None


# ---------------------------------------------------------------------- rule 5: run end


def test_the_executable_exiting_ends_the_run() -> None:
    completed = rules.exited(0)
    assert completed.outcome is P.COMPLETED
    assert completed.ending is not None
    assert completed.ending.phase is SessionPhase.COMPLETED
    failed = rules.exited(3)
    assert failed.outcome is P.FAILED
    assert failed.ending is not None
    assert failed.ending.phase is SessionPhase.FAILED
    assert rules.exited(137).notes[0].values["reason"] == " (killed: out of memory?)"


def test_the_run_ends_when_its_time_is_up() -> None:
    end = T0 + 60 * S
    assert rules.time_up(end, now=end - S) is None
    decision = rules.time_up(end, now=end)
    assert decision is not None
    assert decision.defer  # committed before the platform is asked
    assert decision.ending is not None
    assert decision.ending.phase is SessionPhase.COMPLETED


def test_a_cancel_releases_what_is_preparing_and_what_is_up() -> None:
    assert rules.preparing(ending=SessionPhase.CANCELLED) == Release(P.CANCELLED)
    assert rules.preparing(ending=None) == Call(Action.POLL)
    compute = _component(R.COMPUTE, "compute", phase=P.RUNNING, started_at=T0)
    decision = rules.up(
        compute,
        ending=SessionPhase.CANCELLED,
        release_after=[],
        end=T0 + 60 * S,
        interactive=False,
        warned=False,
        now=T0,
        timings=TIMINGS,
    )
    assert decision == Release(P.CANCELLED)


def test_what_happened_to_a_component_is_its_outcome() -> None:
    compute = _component(R.COMPUTE, "compute", phase=P.RUNNING)
    storage = _component(R.STORAGE, "storage", phase=P.AVAILABLE)
    assert rules.release_outcome(compute, SessionPhase.CANCELLED) is P.CANCELLED
    assert rules.release_outcome(storage, SessionPhase.CANCELLED) is P.COMPLETED
    failed = dataclasses.replace(compute, outcome=P.FAILED)
    assert rules.release_outcome(failed, SessionPhase.COMPLETED) is P.FAILED


def test_release_order_compute_then_executable_and_data_then_storage() -> None:
    session = _session(Plan())
    parts = _by_name(session)
    graph = SessionGraph.of(session)
    assert rules.may_release(graph.release_after(parts["compute"]))
    assert not rules.may_release(graph.release_after(parts["exe"]))  # compute is WAITING
    done = {"compute": P.COMPLETED}
    ended = [dataclasses.replace(c, phase=done.get(c.name, c.phase)) for c in session.components]
    graph = SessionGraph(ended)
    ended_parts = {c.name: c for c in ended}
    assert rules.may_release(graph.release_after(ended_parts["exe"]))
    assert rules.may_release(graph.release_after(ended_parts["data"]))
    assert not rules.may_release(graph.release_after(ended_parts["storage"]))  # data is up


async def test_release_calls_follow_the_order() -> None:
    clock = ManualClock(T0)
    session = _session(Plan())
    platform = Scripted(clock, run=3)
    session = await _drive(session, platform, clock, seconds=120)
    assert session.phase is SessionPhase.COMPLETED
    releases = [name for action, name in platform.calls if action is Action.RELEASE]
    assert releases[0] == "compute"
    assert releases[-1] == "storage"
    assert set(releases) == {"compute", "exe", "data", "storage"}


# ---------------------------------------------------------------------- commit first


def test_a_release_whose_reason_matters_is_committed_first() -> None:
    started = _component(R.DATA, "data", phase=P.AVAILABLE, started_at=T0)
    never = _component(R.DATA, "data", phase=P.WAITING)
    step = rules.release_step
    assert step(never, P.CANCELLED, ending=SessionPhase.CANCELLED, defer=False) is ReleaseStep.END
    for outcome, ending in (
        (P.CANCELLED, SessionPhase.CANCELLED),
        (P.FAILED, SessionPhase.FAILED),
        (P.COMPLETED, SessionPhase.FAILED),
    ):
        assert step(started, outcome, ending=ending, defer=False) is ReleaseStep.COMMIT_FIRST
    assert step(started, P.COMPLETED, ending=SessionPhase.COMPLETED, defer=True) is (
        ReleaseStep.COMMIT_FIRST
    )
    assert step(started, P.COMPLETED, ending=SessionPhase.COMPLETED, defer=False) is (
        ReleaseStep.ASK_NOW
    )
    # The compute, polled while it is up, is always committed first: a poll that finds
    # it ending then meets an end the broker did not ask for, never one of its own.
    compute = _component(R.COMPUTE, "compute", phase=P.RUNNING, started_at=T0)
    assert step(compute, P.COMPLETED, ending=SessionPhase.COMPLETED, defer=False) is (
        ReleaseStep.COMMIT_FIRST
    )
    assert rules.fail_step(started) is ReleaseStep.COMMIT_FIRST
    assert rules.fail_step(never) is ReleaseStep.END


async def test_a_cancel_is_committed_before_any_release_is_asked_for() -> None:
    clock = ManualClock(T0)
    platform = Scripted(clock, run=600)
    session = await _drive(_session(Plan(run=600)), platform, clock, seconds=40)
    assert session.phase is SessionPhase.RUNNING
    session = dataclasses.replace(session, ending=SessionPhase.CANCELLED)
    calls = len(platform.calls)
    first = await advance(session, platform, now=clock.now(), timings=TIMINGS)
    assert platform.calls[calls:] == []  # nothing asked of the platform yet
    assert first.ending is SessionPhase.CANCELLED
    assert {c.phase for c in first.components if c.uuid in first.deferred} == {P.RELEASING}
    session = _commit(session, first)
    second = await advance(session, platform, now=clock.now(), timings=TIMINGS)
    assert (Action.RELEASE, "compute") in platform.calls[calls:]
    assert second.phase is SessionPhase.CANCELLED


# ---------------------------------------------------------------------- rule 6: end warning


def test_an_interactive_session_is_warned_before_its_end() -> None:
    end = T0 + 600 * S
    window = end - TIMINGS.end_warning
    kwargs: dict[str, Any] = {"warned": False, "timings": TIMINGS}
    assert rules.end_warning(end, interactive=True, now=window - S, **kwargs) is None
    note = rules.end_warning(end, interactive=True, now=window, **kwargs)
    assert note is not None
    assert note.session
    assert note.level is MessageLevel.WARN
    assert rules.end_warning(end, interactive=False, now=window, **kwargs) is None
    assert rules.end_warning(end, interactive=True, now=window, warned=True, timings=TIMINGS) is (
        None
    )


async def test_the_warning_reaches_the_session_and_its_connectors() -> None:
    clock = ManualClock(T0)
    plan = Plan(run=400, kind=kinds.EXECUTABLE_JUPYTER)
    platform = Scripted(clock, run=10_000)
    session = await _drive(_session(plan), platform, clock, seconds=40)
    session = dataclasses.replace(session, connectors=[{"location": "https://x"}])
    clock.set(plan.start + (400 - 300) * S)
    step = await advance(session, platform, now=clock.now(), timings=TIMINGS)
    assert step.warned
    assert "save your work" in " ".join(m.message or "" for m in step.messages)
    assert step.connectors[0]["releases"]


def test_the_compute_is_looked_at_by_its_warning_and_its_end() -> None:
    compute = _component(R.COMPUTE, "compute", phase=P.RUNNING)
    end = T0 + 1000 * S

    def look(component: ComponentRecord, next_check: timedelta | None) -> datetime | None:
        return rules.next_look(
            component,
            end=end,
            next_check=next_check,
            interactive=True,
            warned=False,
            now=T0,
            timings=TIMINGS,
        )

    assert look(compute, None) == T0 + TIMINGS.poll_interval
    assert look(compute, 2000 * S) == end - TIMINGS.end_warning
    assert look(_component(R.STORAGE, "storage", phase=P.AVAILABLE), S) is None


# ---------------------------------------------------------------------- platform answers


def test_platform_answers_become_decisions() -> None:
    exe = _component(R.EXECUTABLE, "exe", phase=P.PREPARING, started_at=T0)

    def answer(state: PlatformState, **fields: Any) -> object:
        status = PlatformStatus(state, **fields)
        return rules.on_status(
            exe, status, end=T0 + 600 * S, interactive=False, warned=False, now=T0, timings=TIMINGS
        )

    ready = answer(PlatformState.READY)
    assert isinstance(ready, Become)
    assert ready.phase is P.AVAILABLE
    assert ready.platform_notes
    assert isinstance(answer(PlatformState.FAILED, message="boom"), Fail)
    assert answer(PlatformState.EXITED, exit_code=2) == rules.exited(2)
    # The executable had exited before the platform let it go: its exit code decides.
    adopted = answer(PlatformState.RELEASING, exit_code=0)
    assert isinstance(adopted, Release)
    assert adopted.already
    assert adopted.outcome is P.COMPLETED
    assert answer(PlatformState.RELEASED, exit_code=1) == rules.exited(1)


def test_an_end_the_broker_did_not_ask_for_is_a_failure() -> None:
    """Issue 17 item 4: a component found ending, ended or gone while the broker had not
    decided to release it fails, with what the platform says, and the session with it."""
    for phase in (P.PREPARING, P.AVAILABLE, P.RUNNING):
        for state in (PlatformState.RELEASING, PlatformState.RELEASED, PlatformState.MISSING):
            compute = _component(R.COMPUTE, "compute", phase=phase, started_at=T0)
            status = PlatformStatus(state, "preempted; events: Killing")
            decision = rules.on_status(
                compute, status, end=T0 + 600 * S, interactive=False, warned=False, now=T0,
                timings=TIMINGS,
            )  # fmt: skip
            assert isinstance(decision, Fail), (phase, state)
            assert "ended by the platform" in decision.note.template
            assert decision.note.values["reason"] == "preempted; events: Killing"
            assert decision.ending is not None
            assert decision.ending.phase is SessionPhase.FAILED
    # A normal exit stays a completed run, even if the platform let go of it since.
    running = _component(R.COMPUTE, "compute", phase=P.RUNNING, started_at=T0)
    exit_0 = rules.on_status(
        running, PlatformStatus(PlatformState.EXITED, exit_code=0), end=T0 + 600 * S,
        interactive=False, warned=False, now=T0, timings=TIMINGS,
    )  # fmt: skip
    assert exit_0 == rules.exited(0)
    gone_after_exit_0 = rules.ended_by_platform(
        running, PlatformStatus(PlatformState.RELEASED, exit_code=0)
    )
    assert isinstance(gone_after_exit_0, Release)
    assert gone_after_exit_0.outcome is P.COMPLETED
    assert gone_after_exit_0.ending is not None
    assert gone_after_exit_0.ending.phase is SessionPhase.COMPLETED


async def test_a_preempted_compute_fails_the_session_and_is_released_once() -> None:
    """The rule applied: the scripted platform ends the compute while it runs; the
    session ends FAILED, the compute FAILED with the platform's words, the rest released,
    and the compute is asked to release once (it is gone already)."""
    clock = ManualClock(T0)
    platform = Preempting(clock, run=600)
    session = await _drive(_session(Plan(run=600)), platform, clock, seconds=40)
    assert session.phase is SessionPhase.RUNNING
    platform.preempted = True
    session = await _drive(session, platform, clock, seconds=30)
    parts = _by_name(session)
    assert session.phase is SessionPhase.FAILED
    assert parts["compute"].phase is P.FAILED
    assert "ended by the platform" in _texts([parts["compute"]])
    assert "Preempted by a higher-priority job" in _texts([parts["compute"]])
    assert "ended by the platform" in _texts(session)
    assert {parts[n].phase for n in ("storage", "data", "exe")} == {P.COMPLETED}
    releases = [name for action, name in platform.calls if action is Action.RELEASE]
    assert releases.count("compute") == 1


async def test_a_normal_exit_is_committed_before_the_compute_is_released() -> None:
    """The compute's release after exit 0 is committed first: the pass that sees the exit
    asks the platform nothing, so a crash can never leave a release the broker asked for
    to be read back as an end it did not ask for."""
    clock = ManualClock(T0)
    platform = Scripted(clock, run=3)
    session = _session(Plan())
    step = await advance(session, platform, now=clock.now(), timings=TIMINGS)
    while step.ending is None:
        session = _commit(session, step)
        clock.advance(S)
        step = await advance(session, platform, now=clock.now(), timings=TIMINGS)
    assert step.ending is SessionPhase.COMPLETED
    assert (Action.RELEASE, "compute") not in platform.calls
    compute = next(c for c in step.components if c.uuid == _by_name(session)["compute"].uuid)
    assert compute.phase is P.RELEASING
    assert compute.uuid in step.deferred
    session = await _drive(_commit(session, step), platform, clock, seconds=10)
    assert session.phase is SessionPhase.COMPLETED


class Preempting(Scripted):
    """Once ``preempted``, the platform ends the compute itself: Terminating, then gone."""

    preempted = False
    polls_since = 0

    async def poll(self, work: Work) -> PlatformStatus:
        if not self.preempted or work.role is not R.COMPUTE:
            return await super().poll(work)
        self.calls.append((Action.POLL, work.component.name))
        self.polls_since += 1
        state = PlatformState.RELEASING if self.polls_since == 1 else PlatformState.MISSING
        return PlatformStatus(state, "Preempted by a higher-priority job")


def test_a_release_answer_ends_the_component() -> None:
    data = _component(R.DATA, "data", phase=P.RELEASING, started_at=T0)
    done = rules.released(data, PlatformStatus(PlatformState.RELEASED), now=T0, timings=TIMINGS)
    assert isinstance(done, Become)
    assert done.phase is P.COMPLETED
    failed = rules.released(data, PlatformStatus(PlatformState.FAILED), now=T0, timings=TIMINGS)
    assert isinstance(failed, Become)
    assert failed.phase is P.FAILED
    assert failed.ending is not None
    assert failed.ending.phase is SessionPhase.FAILED
    later = rules.released(
        data, PlatformStatus(PlatformState.RELEASING, next_check=3 * S), now=T0, timings=TIMINGS
    )
    assert later == Wait(T0 + 3 * S)


def test_a_volume_mount_follows_its_compute() -> None:
    volume = _component(R.VOLUME, "mount")
    compute = _component(R.COMPUTE, "compute", phase=P.RUNNING, started_at=T0)
    assert rules.volume_phase(volume, compute) is P.AVAILABLE
    assert rules.volume_phase(volume, None) is P.CANCELLED
    never = dataclasses.replace(compute, phase=P.FAILED, started_at=None)
    assert rules.volume_phase(volume, never) is P.CANCELLED
    assert rules.volume_phase(volume, dataclasses.replace(compute, phase=P.FAILED)) is (P.COMPLETED)


# ---------------------------------------------------------------------- a hung platform call


class Hung(Scripted):
    """Every poll hangs until it is cut off."""

    async def poll(self, work: Work) -> PlatformStatus:
        self.calls.append((Action.POLL, work.component.name))
        await asyncio.Event().wait()
        raise AssertionError("never answered")


def _preparing(n: int) -> SessionRecord:
    session = _session(Plan())
    parts = [
        dataclasses.replace(c, phase=P.PREPARING, started_at=T0, due=T0)
        for c in session.components
        if c.role in (R.STORAGE, R.EXECUTABLE)
    ][:n]
    return dataclasses.replace(session, components=parts)


async def test_a_hung_call_is_cut_off_and_tried_again_later() -> None:
    platform = Hung(ManualClock(T0))
    timings = dataclasses.replace(TIMINGS, call_deadline=timedelta(seconds=0.02))
    step = await advance(_preparing(1), platform, now=T0, timings=timings)
    (change,) = step.components
    assert change.phase is P.PREPARING  # not the component's fault
    assert change.due == T0 + TIMINGS.poll_interval


async def test_a_pass_makes_no_call_past_its_budget() -> None:
    """Each call has its deadline, and so has the whole pass: two hung calls cannot add up to
    more than the pass's budget (the engine gives it half its lease)."""
    platform = Hung(ManualClock(T0))
    timings = dataclasses.replace(TIMINGS, call_deadline=timedelta(seconds=10))
    began = time.monotonic()
    step = await advance(
        _preparing(2), platform, now=T0, timings=timings, budget=timedelta(seconds=0.05)
    )
    assert time.monotonic() - began < 1
    assert len(platform.calls) == 1  # the second was not made: the pass was out of time
    assert {c.due for c in step.components} == {T0 + TIMINGS.poll_interval}


class _Claims:
    """Just enough of the store's engine claims for one engine pass over one session."""

    def __init__(self, session: SessionRecord) -> None:
        self.session: SessionRecord | None = session
        self.committed: list[Advance] = []

    async def claim_due(self, **_: object) -> list[SessionRecord]:
        found, self.session = self.session, None
        return [found] if found else []

    async def commit_advances(
        self, advances: list[Advance], **_: object
    ) -> tuple[list[UUID], datetime | None]:
        self.committed.extend(advances)
        return [a.session_uuid for a in advances], None

    async def next_step_due(self, **_: object) -> datetime | None:
        return None


class _Store:
    """Just enough of BrokerStore for one engine pass: its claims."""

    def __init__(self, session: SessionRecord) -> None:
        self.claims = _Claims(session)


async def test_an_engine_step_ends_within_its_claim() -> None:
    """The hung call defect: a step whose calls hang commits well inside its lease."""
    clock = ManualClock(T0)
    store = _Store(_preparing(2))
    lease = timedelta(seconds=0.2)
    engine = Engine(
        store=cast(BrokerStore, store),
        platform=Hung(clock),
        clock=clock,
        changes=ChangeFeed(),
        late_steps=TaskGroup("late-steps"),
        timings=dataclasses.replace(TIMINGS, call_deadline=timedelta(seconds=10)),
        lease=lease,
        step_deadline=None,  # wait for the step, however long
    )
    began = time.monotonic()
    assert await engine.run_once() == 1
    assert time.monotonic() - began < lease.total_seconds()
    (step,) = store.claims.committed
    assert all(c.phase is P.PREPARING for c in step.components)
