"""The component graph: typed references read from the stored fields, and the edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from execbroker.model.graph import SessionGraph
from execbroker.model.phases import ComponentPhase
from execbroker.model.records import ComponentRecord, ComponentRole, Refs, Schedule

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SESSION = uuid4()
SCHEDULE = Schedule(T0, timedelta(seconds=1), T0, timedelta(minutes=1), timedelta(seconds=1))


def _component(
    role: ComponentRole, name: str, spec: dict[str, Any] | None = None
) -> ComponentRecord:
    return ComponentRecord(
        uuid4(), SESSION, "u", role, 0, name, "k", spec or {}, None,
        ComponentPhase.WAITING, SCHEDULE, T0, T0,
    )  # fmt: skip


def test_refs_round_trip_through_the_stored_fields() -> None:
    storage, resource = uuid4(), uuid4()
    refs = Refs(storage=storage, resource=resource, data=(uuid4(), uuid4()))
    fields = refs.fields()
    assert fields["storage"] == str(storage)
    assert Refs.of(fields) == refs
    assert Refs.of({"storage": "not a uuid", "data": "nor a list"}) == Refs()
    assert Refs().fields() == {}


def test_the_edges_follow_design_section_3() -> None:
    storage = _component(ComponentRole.STORAGE, "storage")
    data = _component(ComponentRole.DATA, "data", Refs(storage=storage.uuid).fields())
    executable = _component(ComponentRole.EXECUTABLE, "exe")
    compute = _component(ComponentRole.COMPUTE, "compute")
    mount_data = _component(ComponentRole.VOLUME, "in", Refs(resource=data.uuid).fields())
    mount_storage = _component(ComponentRole.VOLUME, "out", Refs(resource=storage.uuid).fields())
    graph = SessionGraph([storage, data, executable, compute, mount_data, mount_storage])

    assert graph.storage_of(data) is storage
    assert graph.mounted(mount_data) is data
    assert graph.held_data(storage) == [data]
    assert graph.needs(storage) == []
    assert graph.needs(executable) == []
    assert graph.needs(data) == [storage]
    assert [c.name for c in graph.needs(compute)] == ["exe", "data", "storage"]
    assert graph.release_after(compute) == []
    assert graph.release_after(executable) == [compute]
    assert graph.release_after(data) == [compute]
    assert graph.release_after(storage) == [compute, data]


def test_a_reference_to_another_session_or_the_wrong_role_is_no_edge() -> None:
    elsewhere = _component(ComponentRole.DATA, "data", Refs(storage=uuid4()).fields())
    executable = _component(ComponentRole.EXECUTABLE, "exe")
    mount = _component(ComponentRole.VOLUME, "m", Refs(resource=executable.uuid).fields())
    graph = SessionGraph([elsewhere, executable, mount])
    assert graph.needs(elsewhere) == []
    assert graph.mounted(mount) is None
