"""The phase families of the v1.0 contract, which phases end a lifecycle, and how a
session's phase follows from its components' (DESIGN §3). Pure: no I/O, no clock.

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
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from execbroker.model.records import ComponentRole

__all__ = [
    "ACTIVE_SESSION_PHASES",
    "EXTEND_PATH",
    "HOLDING_SESSION_PHASES",
    "TERMINAL_COMPONENT_PHASES",
    "TERMINAL_SESSION_PHASES",
    "ComponentPhase",
    "ConnectorStatus",
    "MessageLevel",
    "OfferResult",
    "SessionPhase",
    "derive_session_phase",
    "final_phase",
    "phase_options",
    "still_releasing",
]


class SessionPhase(StrEnum):
    """An execution session's phase (``SimpleExecutionSessionPhase``).

    ``INITIAL → OFFERED → ACCEPTED | REJECTED | EXPIRED``, then
    ``ACCEPTED → WAITING → PREPARING → AVAILABLE → RUNNING → RELEASING →
    COMPLETED | FAILED``; a cancel goes to ``CANCELLED`` at once, from any active phase.
    """

    INITIAL = "INITIAL"
    OFFERED = "OFFERED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    WAITING = "WAITING"
    PREPARING = "PREPARING"
    AVAILABLE = "AVAILABLE"
    RUNNING = "RUNNING"
    RELEASING = "RELEASING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ComponentPhase(StrEnum):
    """A component's phase (``LifecyclePhase``).

    ``INITIALIZING → WAITING → PREPARING → AVAILABLE (→ RUNNING) → RELEASING →
    COMPLETED | FAILED | CANCELLED``. Components of an offer stay ``INITIALIZING`` until it
    is accepted; when the offer is rejected or expires they end ``CANCELLED``.
    """

    INITIALIZING = "INITIALIZING"
    WAITING = "WAITING"
    PREPARING = "PREPARING"
    AVAILABLE = "AVAILABLE"
    RUNNING = "RUNNING"
    RELEASING = "RELEASING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ConnectorStatus(StrEnum):
    """Whether a connector (a URL into a running session, e.g. a notebook) can be used yet, or no
    longer.
    """

    PREPARING = "PREPARING"
    AVAILABLE = "AVAILABLE"
    FINISHED = "FINISHED"


class MessageLevel(StrEnum):
    """How serious a message is, as the v1.0 schema grades it."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    OTHER = "OTHER"


class OfferResult(StrEnum):
    """Whether an offer set holds offers (``YES``) or says why not (``NO``)."""

    YES = "YES"
    NO = "NO"


TERMINAL_SESSION_PHASES = frozenset(
    {
        SessionPhase.REJECTED,
        SessionPhase.EXPIRED,
        SessionPhase.COMPLETED,
        SessionPhase.FAILED,
        SessionPhase.CANCELLED,
    }
)

# Accepted and not yet ended: the phases a user may cancel from.
ACTIVE_SESSION_PHASES = frozenset(
    {
        SessionPhase.ACCEPTED,
        SessionPhase.WAITING,
        SessionPhase.PREPARING,
        SessionPhase.AVAILABLE,
        SessionPhase.RUNNING,
    }
)

# Accepted and not yet ended, or still being released: what holds the pool's capacity.
HOLDING_SESSION_PHASES = ACTIVE_SESSION_PHASES | {SessionPhase.RELEASING}

TERMINAL_COMPONENT_PHASES = frozenset(
    {ComponentPhase.COMPLETED, ComponentPhase.FAILED, ComponentPhase.CANCELLED}
)

# The one field of a session a client may change besides its phase: the available duration.
EXTEND_PATH = "/schedule/available/duration"


def phase_options(phase: SessionPhase) -> list[SessionPhase]:
    """The phases a client may set ``/phase`` to now."""
    if phase is SessionPhase.OFFERED:
        return [SessionPhase.ACCEPTED, SessionPhase.REJECTED]
    if phase in ACTIVE_SESSION_PHASES:
        return [SessionPhase.CANCELLED]
    return []


def final_phase(ending: SessionPhase, phases: Iterable[ComponentPhase]) -> SessionPhase:
    """The terminal phase: CANCELLED if cancelled; else FAILED if any component failed,
    else the ending decided.
    """
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
    # records imports this module for the phase enums, so the role enum comes in here.
    from execbroker.model.records import ComponentRole  # noqa: PLC0415

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
    release: its booking holds its capacity until they are.
    """
    return ending is SessionPhase.CANCELLED and not all(
        p in TERMINAL_COMPONENT_PHASES for p in phases
    )
