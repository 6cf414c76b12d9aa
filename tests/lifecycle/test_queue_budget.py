"""Rule 4 beyond DESIGN: a component the platform holds in its queue has the queue budget,
and its preparing budget counts from its admission (issue 17, item 3)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from execbroker.lifecycle import rules
from execbroker.lifecycle.rules import Become, EngineTimings, Release, Wait
from execbroker.model.messages import render_template
from execbroker.model.phases import ComponentPhase, SessionPhase
from execbroker.model.records import ComponentRecord, ComponentRole, Schedule
from execbroker.platforms.base import PlatformState, PlatformStatus

T0 = datetime(2030, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)
# The scaled timings of a test: a 2 s estimate, 1 s of slack, a 20 s queue budget.
TIMINGS = EngineTimings(budget_slack=S, poll_interval=S, queue_budget=20 * S)


def _compute(prepare: float = 2) -> ComponentRecord:
    return ComponentRecord(
        uuid=uuid4(),
        session_uuid=uuid4(),
        owner="alice",
        role=ComponentRole.COMPUTE,
        position=0,
        name="compute",
        kind="k",
        spec={},
        description=None,
        phase=ComponentPhase.PREPARING,
        schedule=Schedule(T0, prepare * S, T0 + prepare * S, 600 * S, S),
        created=T0,
        modified=T0,
        started_at=T0,
    )


def _answer(component: ComponentRecord, *, queued: bool, now: datetime) -> rules.Decision:
    status = PlatformStatus(PlatformState.PREPARING, "held by Kueue", queued=queued)
    return rules.on_status(
        component,
        status,
        end=T0 + 600 * S,
        interactive=False,
        warned=False,
        now=now,
        timings=TIMINGS,
    )


def _with_notes(
    component: ComponentRecord, decision: rules.Decision, now: datetime
) -> ComponentRecord:
    """The component once the engine kept what the decision changed of its queue."""
    assert isinstance(decision, Become)
    return dataclasses.replace(
        component,
        queued_at=decision.queued_at or component.queued_at,
        admitted_at=decision.admitted_at or component.admitted_at,
    )


def _text(note: rules.Note) -> str:
    return render_template(note.template, {k: str(v) for k, v in note.values.items()})


def test_a_queued_compute_says_so_once_and_has_the_queue_budget() -> None:
    compute = _compute()
    first = _answer(compute, queued=True, now=T0 + S)
    assert isinstance(first, Become)
    assert first.phase is ComponentPhase.PREPARING
    assert [n.template for n in first.notes] == [rules.QUEUED]
    assert first.notes[0].values["reason"] == "held by Kueue"
    queued = _with_notes(compute, first, T0 + S)
    # Long past the old budget (2 s + 1 s), still queued: it waits, saying nothing more.
    later = _answer(queued, queued=True, now=T0 + 10 * S)
    assert later == Wait(T0 + 11 * S)
    assert rules.budget_deadline(queued, now=T0 + 10 * S, timings=TIMINGS) == T0 + 20 * S
    # Past the queue budget it is cancelled, saying which budget ran out.
    over = _answer(queued, queued=True, now=T0 + 20 * S)
    assert isinstance(over, Release)
    assert over.outcome is ComponentPhase.CANCELLED
    assert over.ending is not None
    assert over.ending.phase is SessionPhase.CANCELLED
    assert "in the platform's queue after its queue budget of PT20S" in _text(over.notes[0])


def test_an_admitted_compute_has_its_preparing_budget_from_its_admission() -> None:
    queued = _with_notes(_compute(), _answer(_compute(), queued=True, now=T0 + S), T0 + S)
    admitted_at = T0 + 15 * S
    admission = _answer(queued, queued=False, now=admitted_at)
    assert isinstance(admission, Become)
    assert [n.template for n in admission.notes] == [rules.ADMITTED]
    assert admission.notes[0].values["waited"] == "PT14S"
    admitted = _with_notes(queued, admission, admitted_at)
    deadline = admitted_at + 2 * S + TIMINGS.budget_slack
    assert rules.budget_deadline(admitted, now=admitted_at, timings=TIMINGS) == deadline
    assert _answer(admitted, queued=False, now=deadline - S) == Wait(deadline)
    over = _answer(admitted, queued=False, now=deadline)
    assert isinstance(over, Release)
    assert "still preparing after its budget of PT3S" in _text(over.notes[0])


def test_a_compute_never_queued_keeps_its_preparing_budget() -> None:
    compute = _compute()
    deadline = T0 + 2 * S + TIMINGS.budget_slack
    assert _answer(compute, queued=False, now=T0 + S) == Wait(T0 + 2 * S)
    over = _answer(compute, queued=False, now=deadline)
    assert isinstance(over, Release)
    assert over.outcome is ComponentPhase.CANCELLED


def test_an_available_component_is_not_sent_back_to_preparing_by_a_queued_answer() -> None:
    compute = dataclasses.replace(_compute(), phase=ComponentPhase.AVAILABLE)
    assert rules.queue_change(compute, queued=True, reason=None, now=T0) is None


def test_a_queued_compute_found_running_was_admitted() -> None:
    """Admitted and started between two polls: it still says how long it was queued."""
    queued = _with_notes(_compute(), _answer(_compute(), queued=True, now=T0 + S), T0 + S)
    running = rules.on_status(
        queued,
        PlatformStatus(PlatformState.RUNNING),
        end=T0 + 600 * S,
        interactive=False,
        warned=False,
        now=T0 + 9 * S,
        timings=TIMINGS,
    )
    assert isinstance(running, Become)
    assert running.phase is ComponentPhase.RUNNING
    assert [n.template for n in running.notes] == [rules.ADMITTED, "{name} is running"]
    assert running.notes[0].values["waited"] == "PT8S"
    assert running.admitted_at == T0 + 9 * S
