"""The platform adapter on its own, against the real runtime: idempotence, mounts that
cannot be made, and what it does on start-up with objects no session owns."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiodocker
import pytest

from execbroker.background import TaskGroup
from execbroker.config import DockerSettings
from execbroker.model import kinds
from execbroker.model.phases import ComponentPhase, SessionPhase
from execbroker.model.records import ComponentRecord, ComponentRole, Schedule, SessionRecord
from execbroker.platforms.base import PlatformState, Work
from execbroker.platforms.docker import DockerPlatform, DockerSetup
from tests.docker.support import TEST_IMAGE, RuntimeInfo, assert_nothing_left, leftovers
from tests.support.waiting import eventually

NOW = datetime.now(UTC)
SCHEDULE = Schedule(NOW, timedelta(seconds=1), NOW, timedelta(minutes=5), timedelta(seconds=1))


def _component(
    session: UUID, role: ComponentRole, name: str, spec: dict[str, Any]
) -> ComponentRecord:
    return ComponentRecord(
        uuid=uuid4(),
        session_uuid=session,
        owner="alice",
        role=role,
        position=0,
        name=name,
        kind=spec["kind"],
        spec=spec,
        description=None,
        phase=ComponentPhase.PREPARING,
        schedule=SCHEDULE,
        created=NOW,
        modified=NOW,
    )


def _session(script: str) -> SessionRecord:
    """A session with a docker executable, a compute resource, and a storage mounted
    read-write at /scratch."""
    uuid = uuid4()
    storage = _component(
        uuid, ComponentRole.STORAGE, "scratch", {"kind": kinds.STORAGE_SIMPLE, "size": {"min": 1}}
    )
    parts = [
        _component(
            uuid,
            ComponentRole.EXECUTABLE,
            "task",
            {
                "kind": kinds.EXECUTABLE_DOCKER,
                "image": {"locations": [TEST_IMAGE]},
                "command": ["sh", "-c", script],
            },
        ),
        _component(
            uuid,
            ComponentRole.COMPUTE,
            "box",
            {"kind": kinds.COMPUTE_SIMPLE, "cores": {"min": 1}, "memory": {"min": 1}},
        ),
        storage,
        _component(
            uuid,
            ComponentRole.VOLUME,
            "scratch-mount",
            {
                "kind": kinds.VOLUME_SIMPLE,
                "path": "/scratch",
                "mode": "READWRITE",
                "resource": str(storage.uuid),
            },
        ),
    ]
    return SessionRecord(
        uuid=uuid,
        owner="alice",
        offer_set_uuid=None,
        position=0,
        phase=SessionPhase.PREPARING,
        expires=None,
        schedule=SCHEDULE,
        cores=1,
        memory_gib=1,
        storage_gib=1,
        created=NOW,
        modified=NOW,
        components=parts,
    )


def _work(session: SessionRecord, role: ComponentRole) -> Work:
    component = session.component(role)
    assert component is not None
    return Work(session, component)


@pytest.fixture
async def platform(
    runtime: RuntimeInfo, instance: str, tmp_path: Path, docker: aiodocker.Docker
) -> AsyncIterator[DockerPlatform]:
    started = DockerPlatform(
        DockerSettings(host=runtime.url, instance=instance, pull="never"),
        DockerSetup(root=tmp_path / "docker"),
        tasks=TaskGroup("docker"),
    )
    await started.start()
    try:
        yield started
    finally:
        await started.stop()
        for entry in await leftovers(docker, instance):
            await docker.containers.container(entry["Id"]).delete(force=True)


async def test_a_mount_that_cannot_be_made_fails_the_compute_and_starts_nothing(
    platform: DockerPlatform, docker: aiodocker.Docker, instance: str, tmp_path: Path
) -> None:
    session = _session("true")  # its storage was never prepared

    status = await platform.prepare(_work(session, ComponentRole.COMPUTE))

    assert status.state is PlatformState.FAILED
    assert "cannot mount storage 'scratch': it is not on the platform" in (status.message or "")
    await platform.release(_work(session, ComponentRole.COMPUTE))
    await assert_nothing_left(docker, instance, tmp_path)


async def test_preparing_twice_adopts_and_releasing_twice_is_harmless(
    platform: DockerPlatform, docker: aiodocker.Docker, instance: str, tmp_path: Path
) -> None:
    session = _session("echo run >> /scratch/log; sleep 30")
    storage = _work(session, ComponentRole.STORAGE)
    compute = _work(session, ComponentRole.COMPUTE)
    assert (await platform.prepare(storage)).state is PlatformState.READY

    first = await platform.prepare(compute)
    second = await platform.prepare(compute)

    assert first.state is second.state is PlatformState.RUNNING
    (container,) = await leftovers(docker, instance)
    labels = container["Labels"]
    assert labels["org.ivoa.execbroker.session"] == str(session.uuid)
    assert labels["org.ivoa.execbroker.component"] == str(compute.uuid)
    inspected = await docker.containers.container(container["Id"]).show()
    host = inspected["HostConfig"]
    assert host["NetworkMode"] == "none", "no network without ports"
    assert host["NanoCpus"] == 10**9
    assert host["Memory"] == 2**30
    assert await platform.objects() == {storage.uuid, compute.uuid}

    await eventually(  # the stop runs in the background
        lambda: platform.release(compute),
        lambda status: status.state is PlatformState.RELEASED,
        what="the compute released",
    )
    assert (await platform.release(compute)).state is PlatformState.RELEASED
    assert (await platform.release(storage)).state is PlatformState.RELEASED
    assert (await platform.release(_work(session, ComponentRole.EXECUTABLE))).state is (
        PlatformState.RELEASED
    )
    await assert_nothing_left(docker, instance, tmp_path)


async def test_on_start_up_orphans_are_removed_and_other_brokers_objects_kept(
    broker: Any,
    docker_settings: dict[str, Any],
    docker: aiodocker.Docker,
    instance: str,
    tmp_path: Path,
) -> None:
    orphan = uuid4()
    labels = {
        "org.ivoa.execbroker.instance": instance,
        "org.ivoa.execbroker.session": str(uuid4()),
        "org.ivoa.execbroker.component": str(orphan),
    }
    config: dict[str, Any] = {
        "Image": TEST_IMAGE,
        "Cmd": ["sleep", "60"],
        "HostConfig": {"NetworkMode": "none"},
    }
    mine = await docker.containers.create({**config, "Labels": labels}, name=f"execbroker-{orphan}")
    await mine.start()
    theirs = await docker.containers.create(
        {**config, "Labels": {**labels, "org.ivoa.execbroker.instance": "another-broker"}}
    )
    lost_storage = uuid4()
    directory = tmp_path / "docker" / "storage" / str(lost_storage)
    directory.mkdir(parents=True)
    (directory / "left.txt").write_text("from a session the database no longer has")
    (tmp_path / "docker" / "objects").mkdir()
    (tmp_path / "docker" / "objects" / f"{lost_storage}.json").write_text(
        json.dumps(
            {
                "component": str(lost_storage),
                "session": str(uuid4()),
                "role": "storage",
                "state": "ready",
                "path": str(directory),
            }
        )
    )
    try:
        async with broker(**docker_settings) as client:
            assert (await client.get("/healthz")).status_code == 200
            await assert_nothing_left(docker, instance, tmp_path)
        assert (await theirs.show())["State"]["Status"] == "created", "not ours: kept"
    finally:
        await theirs.delete(force=True)
