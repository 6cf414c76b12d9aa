"""What one engine pass over a session changed: the engine makes it, storage commits it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from execbroker.model.phases import ComponentPhase, SessionPhase
from execbroker.model.wire import MessageItem

__all__ = ["Advance", "ComponentChange"]


@dataclass
class ComponentChange:
    """A component's new engine state, and the messages to add to it."""

    uuid: UUID
    phase: ComponentPhase
    due: datetime | None
    outcome: ComponentPhase | None
    started_at: datetime | None
    exit_code: int | None
    messages: list[MessageItem] = field(default_factory=list)
    queued_at: datetime | None = None
    admitted_at: datetime | None = None


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
