"""A session's phase, derived from its components' phases (DESIGN §3). One pure function.

| session    | when                                                                      |
|------------|---------------------------------------------------------------------------|
| ACCEPTED   | accepted, not yet seen by the engine                                      |
| WAITING    | nothing preparing yet, or only some components ready, compute not started |
| PREPARING  | any component is preparing, nothing failed or ending                      |
| AVAILABLE  | the compute is up, nothing releasing                                      |
| RUNNING    | the executable is running                                                 |
| RELEASING  | the run is over (or failed, or was cancelled) and components are released |
| COMPLETED / FAILED / CANCELLED | every component has ended: FAILED if any failed; else  |
|            | CANCELLED if the user or a preparing budget cancelled; else COMPLETED     |

The *ending* is the engine's or the user's decision that the run is over; once made it is
never unmade, so a late platform result cannot turn a cancelled session back into a
running one.
"""

from __future__ import annotations

from collections.abc import Iterable

from execbroker.model.phases import TERMINAL_COMPONENT_PHASES, ComponentPhase, SessionPhase
from execbroker.model.records import ComponentRole

__all__ = ["ENDINGS", "derive_session_phase", "final_phase"]

ENDINGS = frozenset({SessionPhase.COMPLETED, SessionPhase.FAILED, SessionPhase.CANCELLED})


def final_phase(ending: SessionPhase, phases: Iterable[ComponentPhase]) -> SessionPhase:
    """The terminal phase: any failed component makes it FAILED, else the ending decided."""
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
