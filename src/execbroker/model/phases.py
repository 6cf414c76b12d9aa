"""The phase families of the v1.0 contract, and which phases end a lifecycle."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE_SESSION_PHASES",
    "HOLDING_SESSION_PHASES",
    "TERMINAL_COMPONENT_PHASES",
    "TERMINAL_SESSION_PHASES",
    "ComponentPhase",
    "ConnectorStatus",
    "MessageLevel",
    "OfferResult",
    "SessionPhase",
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
    PREPARING = "PREPARING"
    AVAILABLE = "AVAILABLE"
    FINISHED = "FINISHED"


class MessageLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    OTHER = "OTHER"


class OfferResult(StrEnum):
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
