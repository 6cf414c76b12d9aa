"""A session's phase, derived from its components' phases (DESIGN §3). One pure function.

| session    | when                                                                      |
|------------|---------------------------------------------------------------------------|
| ACCEPTED   | accepted, not yet seen by the engine                                      |
| WAITING    | nothing preparing yet, or only some components ready, compute not started |
| PREPARING  | any component is preparing, nothing failed or ending                      |
| AVAILABLE  | the compute is up, nothing releasing                                      |
| RUNNING    | the executable is running                                                 |
| CANCELLED  | the user (or a preparing budget) cancelled it: at once, while components  |
|            | are still released (:func:`still_releasing`)                              |
| RELEASING  | the run is over (or failed) and components are released                   |
| COMPLETED / FAILED | every component has ended: FAILED if any failed, else COMPLETED   |

The *ending* is the engine's or the user's decision that the run is over; once made it is
never unmade, so a late platform result cannot turn a cancelled session back into a
running one. A cancel is a decision, and the session says so at once, as the reference
broker's does; its components keep showing what is really happening to them, and the
calendar holds its capacity until they are released. A run that ends by itself is
COMPLETED or FAILED only once everything is released: until then a release could still
fail.
"""

from __future__ import annotations

from collections.abc import Iterable

from execbroker.model.phases import TERMINAL_COMPONENT_PHASES, ComponentPhase, SessionPhase
from execbroker.model.records import ComponentRole

__all__ = ["ENDINGS", "derive_session_phase", "final_phase", "still_releasing"]

ENDINGS = frozenset({SessionPhase.COMPLETED, SessionPhase.FAILED, SessionPhase.CANCELLED})


def final_phase(ending: SessionPhase, phases: Iterable[ComponentPhase]) -> SessionPhase:
    """The terminal phase: CANCELLED if cancelled; else FAILED if any component failed,
    else the ending decided."""
    if ending is SessionPhase.CANCELLED:
        return ending
    if any(p is ComponentPhase.FAILED for p in phases):
        return SessionPhase.FAILED
    return ending


def derive_session_phase(
    *,
    seen: bool,
    ending: SessionPhase | None,
    components: Iterable[tuple[ComponentRole, ComponentPhase]],
) -> SessionPhase:
    """The phase of an accepted session with these components."""
    parts = list(components)
    phases = [phase for _, phase in parts]
    if ending is SessionPhase.CANCELLED:
        return SessionPhase.CANCELLED
    if ending is not None and all(p in TERMINAL_COMPONENT_PHASES for p in phases):
        return final_phase(ending, phases)
    if ending is not None or any(
        p in (ComponentPhase.RELEASING, ComponentPhase.FAILED, ComponentPhase.CANCELLED)
        for p in phases
    ):
        return SessionPhase.RELEASING
    compute = [phase for role, phase in parts if role is ComponentRole.COMPUTE]
    if ComponentPhase.RUNNING in compute:
        return SessionPhase.RUNNING
    if ComponentPhase.AVAILABLE in compute:
        return SessionPhase.AVAILABLE
    if ComponentPhase.PREPARING in phases:
        return SessionPhase.PREPARING
    if not seen:
        return SessionPhase.ACCEPTED
    return SessionPhase.WAITING


def still_releasing(ending: SessionPhase | None, phases: Iterable[ComponentPhase]) -> bool:
    """Whether a session already in its final phase (cancelled) still has components to
    release: its booking holds its capacity until they are."""
    return ending is SessionPhase.CANCELLED and not all(
        p in TERMINAL_COMPONENT_PHASES for p in phases
    )
