"""The component graph of a session: what each component needs, and what it outlives.

DESIGN §3 in terms of edges. A **data** resource is staged into its storage, so it needs that
storage. The **compute** resource runs the executable and mounts what its volume mounts name,
so it needs the executable and every mounted storage or data resource. Storage and the
executable need nothing. Release runs the other way round: the compute goes first, then the
executable and data, then each storage once the data it holds is gone. A volume mount has no
life of its own: it follows its compute.

The edges are the typed :class:`~execbroker.model.records.Refs` of each component. Planning
writes them (``build_session``), the lifecycle rules walk them, and platforms look up what a
data resource lives on or what a volume mounts here instead of reading document fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from execbroker.model.records import ComponentRecord, ComponentRole, SessionRecord

__all__ = ["SessionGraph"]


class SessionGraph:
    """The components of one session, indexed by uuid, with their dependency edges."""

    def __init__(self, components: Iterable[ComponentRecord]) -> None:
        self._components = sorted(components, key=lambda c: (c.role.value, c.position))
        self._by_uuid = {c.uuid: c for c in self._components}

    @classmethod
    def of(cls, session: SessionRecord) -> SessionGraph:
        return cls(session.components)

    def get(self, uuid: UUID | None) -> ComponentRecord | None:
        return None if uuid is None else self._by_uuid.get(uuid)

    def of_role(self, role: ComponentRole) -> list[ComponentRecord]:
        return [c for c in self._components if c.role is role]

    def storage_of(self, data: ComponentRecord) -> ComponentRecord | None:
        """The storage resource a data resource is staged into (None: it names none here)."""
        found = self.get(data.refs.storage)
        return found if found is not None and found.role is ComponentRole.STORAGE else None

    def mounted(self, volume: ComponentRecord) -> ComponentRecord | None:
        """The storage or data resource a volume mount binds (None: it names none here)."""
        found = self.get(volume.refs.resource)
        if found is None or found.role not in (ComponentRole.STORAGE, ComponentRole.DATA):
            return None
        return found

    def held_data(self, storage: ComponentRecord) -> list[ComponentRecord]:
        """The data resources staged into ``storage``."""
        return [d for d in self.of_role(ComponentRole.DATA) if d.refs.storage == storage.uuid]

    def needs(self, component: ComponentRecord) -> list[ComponentRecord]:
        """What must be AVAILABLE when ``component`` starts preparing (DESIGN §3, rules 2, 3)."""
        match component.role:
            case ComponentRole.DATA:
                storage = self.storage_of(component)
                return [storage] if storage is not None else []
            case ComponentRole.COMPUTE:
                needed = self.of_role(ComponentRole.EXECUTABLE)
                for volume in self.of_role(ComponentRole.VOLUME):
                    target = self.mounted(volume)
                    if target is not None and all(n.uuid != target.uuid for n in needed):
                        needed.append(target)
                return needed
            case _:
                return []

    def release_after(self, component: ComponentRecord) -> list[ComponentRecord]:
        """What must have ended before ``component`` is released (DESIGN §3, rule 5): the compute
        first; then the executable and data; each storage after the data it holds.
        """
        computes = self.of_role(ComponentRole.COMPUTE)
        match component.role:
            case ComponentRole.EXECUTABLE | ComponentRole.DATA:
                return computes
            case ComponentRole.STORAGE:
                return [*computes, *self.held_data(component)]
            case _:
                return []
