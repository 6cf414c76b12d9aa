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
    "Refs",
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
        """The URL path segment: ``/executables/{uuid}``, ``/volumes/{uuid}`` and so on."""
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


@dataclass(frozen=True)
class Refs:
    """What a component refers to in its session, by uuid: the component graph's edges.

    They are stored, and sent on the wire, as fields of the component's own document: a data
    resource's ``storage``, a volume mount's ``resource`` and a storage resource's ``data``
    (the data it holds, for readers of the wire). :meth:`of` reads them from there and
    :meth:`fields` writes them back, so that nothing else needs to know those keys.
    """

    storage: UUID | None = None  # a data resource: the storage it is staged into
    resource: UUID | None = None  # a volume mount: the storage or data it mounts
    data: tuple[UUID, ...] = ()  # a storage resource: the data held in it

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Refs:
        held = spec.get("data")
        return cls(
            storage=_uuid(spec.get("storage")),
            resource=_uuid(spec.get("resource")),
            data=tuple(u for u in map(_uuid, held) if u is not None)
            if isinstance(held, list)
            else (),
        )

    def fields(self) -> dict[str, Any]:
        """The document fields that say these references (only the ones set)."""
        found: dict[str, Any] = {}
        if self.storage is not None:
            found["storage"] = str(self.storage)
        if self.resource is not None:
            found["resource"] = str(self.resource)
        if self.data:
            found["data"] = [str(u) for u in self.data]
        return found


def _uuid(value: object) -> UUID | None:
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


@dataclass
class ComponentRecord:
    """One component of a session: its wire fields, phase, schedule and engine state."""

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
    # When the platform was first seen holding it in its queue, and seen admitting it.
    queued_at: datetime | None = None
    admitted_at: datetime | None = None

    @property
    def refs(self) -> Refs:
        """The other components of its session this one refers to (see :mod:`.graph`)."""
        return Refs.of(self.spec)


@dataclass
class SessionRecord:
    """An offer or a session as the broker stores it: owner, phase, schedule, resources, and its
    components.

    An offer is a session in ``OFFERED``; accepting it changes its phase, not its identity.
    ``expires`` is set while it is an offer.
    """

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
    # Interactive sessions it books (0 or 1): what a platform's per-account limit counts.
    interactive: int = 0
    # Moving earlier when capacity frees up: whether it may, the earliest start its request
    # allows, the start it was offered (it never starts later), and when it was accepted.
    moves_earlier: bool = False
    earliest_start: datetime | None = None
    promised_start: datetime | None = None
    accepted_at: datetime | None = None
    # Worked out on reading, not stored: how far the calendar lets the run be extended.
    extension_limit: timedelta | None = None

    def component(self, role: ComponentRole) -> ComponentRecord | None:
        return next((c for c in self.components if c.role is role), None)

    def components_of(self, role: ComponentRole) -> list[ComponentRecord]:
        return sorted((c for c in self.components if c.role is role), key=lambda c: c.position)


@dataclass
class OfferSetRecord:
    """The answer to one execution request: its result, its messages, and the offers made."""

    uuid: UUID
    owner: str
    result: OfferResult
    created: datetime
    modified: datetime
    messages: list[MessageItem] = field(default_factory=list)
    offers: list[SessionRecord] = field(default_factory=list)
