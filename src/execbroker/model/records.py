"""The broker's own records of offer sets, sessions and components.

Storage turns rows into these and back; services decide with them; the API renders them
to the wire models. Every record has an ``owner``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from execbroker.model.phases import ComponentPhase, OfferResult, SessionPhase
from execbroker.model.wire import MessageItem

__all__ = [
    "ComponentRecord",
    "ComponentRole",
    "OfferSetRecord",
    "Schedule",
    "SessionRecord",
]


class ComponentRole(StrEnum):
    """What a component is to its session; each has its own URL collection."""

    EXECUTABLE = "executable"
    COMPUTE = "compute"
    STORAGE = "storage"
    DATA = "data"
    VOLUME = "volume"

    @property
    def collection(self) -> str:
        """The URL path segment: ``/executables/{uuid}``, ``/volumes/{uuid}``, …"""
        return _COLLECTIONS[self]


_COLLECTIONS = {
    ComponentRole.EXECUTABLE: "executables",
    ComponentRole.COMPUTE: "compute",
    ComponentRole.STORAGE: "storage",
    ComponentRole.DATA: "data",
    ComponentRole.VOLUME: "volumes",
}


@dataclass(frozen=True)
class Schedule:
    """When a component (or a whole session) prepares, is available, and is released."""

    prepare_start: datetime
    prepare_duration: timedelta
    available_start: datetime
    available_duration: timedelta
    release_duration: timedelta

    @property
    def release_start(self) -> datetime:
        return self.available_start + self.available_duration

    @property
    def release_end(self) -> datetime:
        return self.release_start + self.release_duration


@dataclass
class ComponentRecord:
    uuid: UUID
    session_uuid: UUID
    owner: str
    role: ComponentRole
    position: int
    name: str
    kind: str
    # The component's own wire fields (no meta, phase or schedule; compute without volumes).
    spec: dict[str, Any]
    description: str | None
    phase: ComponentPhase
    schedule: Schedule
    created: datetime
    modified: datetime
    messages: list[MessageItem] = field(default_factory=list)
    due: datetime | None = None
    outcome: ComponentPhase | None = None
    started_at: datetime | None = None
    exit_code: int | None = None


@dataclass
class SessionRecord:
    uuid: UUID
    owner: str
    offer_set_uuid: UUID | None
    position: int
    phase: SessionPhase
    expires: datetime | None
    schedule: Schedule
    cores: int
    memory_gib: int
    storage_gib: int
    created: datetime
    modified: datetime
    messages: list[MessageItem] = field(default_factory=list)
    connectors: list[dict[str, Any]] = field(default_factory=list)
    components: list[ComponentRecord] = field(default_factory=list)
    costs: list[dict[str, Any]] = field(default_factory=list)
    next_due: datetime | None = None
    ending: SessionPhase | None = None
    seen: bool = False
    warned: bool = False
    revision: int = 0
    # Worked out on reading, not stored: how far the calendar lets the run be extended.
    extension_limit: timedelta | None = None

    def component(self, role: ComponentRole) -> ComponentRecord | None:
        return next((c for c in self.components if c.role is role), None)

    def components_of(self, role: ComponentRole) -> list[ComponentRecord]:
        return sorted((c for c in self.components if c.role is role), key=lambda c: c.position)


@dataclass
class OfferSetRecord:
    uuid: UUID
    owner: str
    result: OfferResult
    created: datetime
    modified: datetime
    messages: list[MessageItem] = field(default_factory=list)
    offers: list[SessionRecord] = field(default_factory=list)
