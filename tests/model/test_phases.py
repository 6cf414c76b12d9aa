"""The session phase table of DESIGN §3, row by row."""

from __future__ import annotations

import pytest

from execbroker.model.phases import ComponentPhase as C
from execbroker.model.phases import SessionPhase as S
from execbroker.model.phases import derive_session_phase, still_releasing
from execbroker.model.records import ComponentRole as R


def parts(storage: C, executable: C, data: C, compute: C) -> list[tuple[R, C]]:
    return [(R.STORAGE, storage), (R.EXECUTABLE, executable), (R.DATA, data), (R.COMPUTE, compute)]


W, P, A, RUN, REL = C.WAITING, C.PREPARING, C.AVAILABLE, C.RUNNING, C.RELEASING
DONE, FAIL, CANC = C.COMPLETED, C.FAILED, C.CANCELLED

TABLE = [
    # (case, seen, ending, components, expected)
    ("accepted, engine not yet there", False, None, parts(W, W, W, W), S.ACCEPTED),
    ("engine has seen it, nothing due yet", True, None, parts(W, W, W, W), S.WAITING),
    ("storage and executable ready, compute waits", True, None, parts(A, A, W, W), S.WAITING),
    ("storage preparing", True, None, parts(P, W, W, W), S.PREPARING),
    ("data staging", True, None, parts(A, A, P, W), S.PREPARING),
    ("compute preparing", True, None, parts(A, A, A, P), S.PREPARING),
    ("compute up", True, None, parts(A, A, A, A), S.AVAILABLE),
    ("executable running", True, None, parts(A, A, A, RUN), S.RUNNING),
    ("run over, compute releasing", True, S.COMPLETED, parts(A, A, A, REL), S.RELEASING),
    ("storage released last", True, S.COMPLETED, parts(REL, DONE, DONE, DONE), S.RELEASING),
    ("all released", True, S.COMPLETED, parts(DONE, DONE, DONE, DONE), S.COMPLETED),
    ("data failed, others releasing", True, S.FAILED, parts(REL, A, FAIL, W), S.RELEASING),
    ("data failed, all released", True, S.FAILED, parts(DONE, DONE, FAIL, CANC), S.FAILED),
    ("user cancelled mid-run: final at once", True, S.CANCELLED, parts(A, A, A, REL), S.CANCELLED),
    ("user cancelled, all released", True, S.CANCELLED, parts(DONE, DONE, DONE, CANC), S.CANCELLED),
    (
        "cancelled, then a release failed: the decision stands",
        True,
        S.CANCELLED,
        parts(FAIL, DONE, DONE, DONE),
        S.CANCELLED,
    ),
    ("budget ran out while preparing", True, S.CANCELLED, parts(A, A, A, CANC), S.CANCELLED),
    ("cancelled before anything started", True, S.CANCELLED, parts(W, W, W, W), S.CANCELLED),
    ("a failure before the engine decided", True, None, parts(A, FAIL, W, W), S.RELEASING),
    ("exit non-zero, all released", True, S.FAILED, parts(DONE, DONE, DONE, FAIL), S.FAILED),
]


@pytest.mark.parametrize(
    ("seen", "ending", "components", "expected"),
    [pytest.param(s, e, c, x, id=case) for case, s, e, c, x in TABLE],
)
def test_session_phase_table(
    seen: bool, ending: S | None, components: list[tuple[R, C]], expected: S
) -> None:
    assert derive_session_phase(seen=seen, ending=ending, components=components) is expected


def test_a_late_platform_result_never_reopens_an_ended_session() -> None:
    # The compute reports RUNNING after the user cancelled: the session stays cancelled.
    phase = derive_session_phase(seen=True, ending=S.CANCELLED, components=parts(A, A, A, RUN))
    assert phase is S.CANCELLED
    # And after a normal end, on its way out.
    phase = derive_session_phase(seen=True, ending=S.COMPLETED, components=parts(A, A, A, RUN))
    assert phase is S.RELEASING


@pytest.mark.parametrize(
    ("ending", "components", "expected"),
    [
        (S.CANCELLED, parts(A, A, A, REL), True),
        (S.CANCELLED, parts(W, W, W, W), True),
        (S.CANCELLED, parts(DONE, DONE, FAIL, CANC), False),
        (S.COMPLETED, parts(A, A, A, REL), False),  # RELEASING holds by its phase
        (None, parts(A, A, A, RUN), False),
    ],
)
def test_a_cancelled_session_holds_its_capacity_until_everything_is_released(
    ending: S | None, components: list[tuple[R, C]], expected: bool
) -> None:
    assert still_releasing(ending, [phase for _, phase in components]) is expected
