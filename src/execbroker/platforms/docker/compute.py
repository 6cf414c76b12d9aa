"""Compute resources: one container per compute resource, named and labelled for it, with
the executable's command, entrypoint and environment, the offered cores and memory, every
volume mount at its path and mode, and no network unless ports are asked for.

Polls share one container listing, refreshed at most every ``listing_seconds``; only a
container the listing does not show as up is inspected on its own. A release is written
down (:mod:`.records`) before the container is stopped, so that after a crash a poll does
not take the stop for the executable's own ending; the record stays as a tombstone until
the session's executable is released (:meth:`Compute.forget_tombstone`).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from execbroker.config import DockerSettings
from execbroker.model.graph import SessionGraph
from execbroker.model.messages import error
from execbroker.model.phases import MessageLevel
from execbroker.model.records import ComponentRecord, ComponentRole, SessionRecord
from execbroker.platforms.base import (
    PlatformError,
    PlatformNote,
    PlatformState,
    PlatformStatus,
    Work,
)
from execbroker.platforms.docker.containers import (
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    SESSION_LABEL,
    ContainerLimits,
    Mount,
    container_config,
    container_name,
    offered_gib,
    port_connectors,
    requested_ports,
)
from execbroker.platforms.docker.executables import Executables
from execbroker.platforms.docker.options import DockerSetup
from execbroker.platforms.docker.ports import PortClaims
from execbroker.platforms.docker.records import LocalObject, ObjectRecords, ObjectState
from execbroker.platforms.docker.runtime import ContainerRuntime
from execbroker.platforms.docker.tasks import ComponentTasks

if TYPE_CHECKING:
    from execbroker.model.plan import Plan
    from execbroker.model.wire import MessageItem

__all__ = ["Compute", "container_user", "port_problems"]

_SOON = timedelta(seconds=0.2)
_UP = ("running", "paused", "restarting")
_ENDED = ("exited", "stopped")
_NOT_YET = ("created", "configured", "initialized")


def port_problems(plan: Plan, setup: DockerSetup) -> list[MessageItem]:
    """A host port the request names must be in the range this broker publishes on."""
    network = plan.executable.spec.get("network") or {}
    problems = []
    allowed = setup.port_range
    for index, item in enumerate(network.get("ports") or []):
        external = (item.get("external") or {}).get("port")
        if external is None or int(external) in allowed:
            continue
        problems.append(
            error(
                "{path}: host port {port} is outside the ports this broker publishes on "
                "({range}); name one in it, or none to be given a free one",
                path=f"/executable/network/ports/{index}/external/port",
                port=int(external),
                range=str(allowed),
            )
        )
    return problems


class Compute:
    """Creates, starts, polls, stops and removes the containers of compute resources."""

    def __init__(
        self,
        settings: DockerSettings,
        setup: DockerSetup,
        runtime: ContainerRuntime,
        records: ObjectRecords,
        *,
        tasks: ComponentTasks,
        executables: Executables,
    ) -> None:
        self._settings = settings
        self._setup = setup
        self._runtime = runtime
        self._records = records
        self._tasks = tasks
        self._executables = executables
        # The value of this broker's instance label (the platform sets it at start).
        self.instance = settings.instance or ""
        # One container listing shared by every poll, refreshed at most every few moments.
        self._listing: dict[str, dict[str, Any]] = {}
        self._listed_at = -math.inf
        self._listing_lock = asyncio.Lock()
        # Host ports picked for containers being created, until they are started.
        self._ports = PortClaims(setup.port_range, settings.publish_address)

    # ------------------------------------------------------------------ prepare

    async def prepare(self, work: Work) -> PlatformStatus:
        claimed: list[tuple[int, str]] = []
        try:
            return await self._create_and_start(work, claimed)
        finally:
            # Started (its ports bound), or not created: the picked ports are not held.
            for port, transport in claimed:
                self._ports.release(port, transport)

    async def _create_and_start(self, work: Work, claimed: list[tuple[int, str]]) -> PlatformStatus:
        found = self._records.get(work.uuid)
        if found is not None and found.state in (ObjectState.RELEASING, ObjectState.RELEASED):
            return await self.release(work.uuid)  # asked before a crash: go on
        name = container_name(work.uuid)
        inspected = await self._runtime.container(name)
        if inspected is None:
            config = await self._container_config(work, claimed)
            if isinstance(config, PlatformStatus):
                return config
            if found is None:
                self._records.put(
                    LocalObject(
                        component=work.uuid,
                        session=work.session.uuid,
                        role=ComponentRole.COMPUTE.value,
                        state=ObjectState.PREPARING,
                    )
                )
            try:
                await self._runtime.create(name, config)
            except PlatformError:
                self._records.remove(work.uuid)
                raise
            self._listed_at = -math.inf
            inspected = await self._runtime.container(name)
            if inspected is None:
                return PlatformStatus(PlatformState.FAILED, "the container vanished once created")
        if _status_of(inspected) in _NOT_YET:
            try:
                await self._runtime.start(str(inspected["Id"]))
            except PlatformError:
                # The engine forgets a component whose prepare raised: leave nothing behind.
                await self._runtime.remove(str(inspected["Id"]))
                self._records.remove(work.uuid)
                raise
            inspected = await self._runtime.container(name) or inspected
        return await self._container_status(work, inspected)

    async def _container_config(
        self, work: Work, claimed: list[tuple[int, str]]
    ) -> dict[str, Any] | PlatformStatus:
        session = work.session
        executable = session.component(ComponentRole.EXECUTABLE)
        if executable is None:
            return PlatformStatus(PlatformState.FAILED, "the session has no executable")
        image = executable.spec.get("image") or {}
        locations = [str(item).strip() for item in image.get("locations") or [] if item]
        found = await self._executables.local_image(locations, image.get("digest"))
        if isinstance(found, PlatformStatus):
            return found
        if found is None:
            return PlatformStatus(
                PlatformState.FAILED, f"image {', '.join(locations)} is no longer on this machine"
            )
        graph = SessionGraph.of(session)
        mounts: list[Mount] = []
        for volume in session.components_of(ComponentRole.VOLUME):
            mount = self._mount(volume, graph.mounted(volume))
            if isinstance(mount, str):
                return PlatformStatus(PlatformState.FAILED, mount)
            mounts.append(mount)
        host_ports: dict[str, int] = {}
        for port in requested_ports(executable.spec):
            if port.external:
                continue
            picked = self._ports.claim(port.transport)
            if picked is None:
                return PlatformStatus(
                    PlatformState.FAILED,
                    f"no free host port in {self._setup.port_range} to publish port {port.key} on",
                )
            claimed.append((picked, port.transport))
            host_ports[port.key] = picked
        return container_config(
            image=str(found[1]["Id"]),
            executable=executable.spec,
            compute=work.component.spec,
            mounts=mounts,
            labels={
                INSTANCE_LABEL: self.instance,
                SESSION_LABEL: str(session.uuid),
                COMPONENT_LABEL: str(work.uuid),
            },
            limits=ContainerLimits(
                network=self._settings.network,
                publish_address=self._settings.publish_address,
                pids=self._settings.pids_limit,
            ),
            host_ports=host_ports,
            # The mounted folders are the broker's user's, 0700: the container is that user.
            user=container_user() if mounts else None,
        )

    def _mount(self, volume: ComponentRecord, target: ComponentRecord | None) -> Mount | str:
        """The bind mount for a volume component of ``target`` (the storage or data it
        names), or why it cannot be made.
        """
        path = str(volume.spec.get("path") or "")
        if target is None or not path:
            return f"volume mount '{volume.name}' names no resource of this session"
        found = self._records.get(target.uuid)
        if found is None or found.state is not ObjectState.READY or found.path is None:
            return (
                f"volume mount '{volume.name}' cannot mount {target.role.value} "
                f"'{target.name}': it is not on the platform"
            )
        if not os.path.isdir(found.path):
            return f"volume mount '{volume.name}': the directory of '{target.name}' is gone"
        return Mount(
            source=Path(found.path),
            target=path,
            read_only=str(volume.spec.get("mode") or "READONLY") != "READWRITE",
        )

    # ------------------------------------------------------------------ poll

    async def poll(self, work: Work) -> PlatformStatus:
        found = self._records.get(work.uuid)
        if found is not None and found.state in (ObjectState.RELEASING, ObjectState.RELEASED):
            return await self.release(work.uuid)
        name = container_name(work.uuid)
        listed = (await self._listed()).get(name)
        if listed is not None and str(listed.get("State")) in _UP:
            ports = requested_ports(_executable_spec(work))
            connectors = port_connectors(
                {"NetworkSettings": {"Ports": _bindings(listed)}},
                ports,
                host=self._setup.connector_host,
            )
            if len(connectors) == len(ports):
                return PlatformStatus(PlatformState.RUNNING, connectors=connectors)
        inspected = await self._runtime.container(name)
        if inspected is None:
            return PlatformStatus(PlatformState.MISSING, "the container is gone")
        if _status_of(inspected) in _NOT_YET:
            await self._runtime.start(str(inspected["Id"]))
            inspected = await self._runtime.container(name) or inspected
        return await self._container_status(work, inspected)

    async def _listed(self) -> dict[str, dict[str, Any]]:
        """The containers of this broker by name, from one listing shared by concurrent polls."""
        if time.monotonic() - self._listed_at < self._setup.listing_seconds:
            return self._listing
        async with self._listing_lock:
            if time.monotonic() - self._listed_at >= self._setup.listing_seconds:
                entries = await self._runtime.containers({INSTANCE_LABEL: self.instance})
                self._listing = {
                    name.lstrip("/"): entry
                    for entry in entries
                    for name in entry.get("Names") or []
                }
                self._listed_at = time.monotonic()
        return self._listing

    async def _container_status(self, work: Work, inspected: dict[str, Any]) -> PlatformStatus:
        state = inspected.get("State") or {}
        status = _status_of(inspected)
        if status in _NOT_YET:
            return PlatformStatus(PlatformState.PREPARING, next_check=_SOON)
        if status in _UP:
            ports = requested_ports(_executable_spec(work))
            return PlatformStatus(
                PlatformState.RUNNING,
                connectors=port_connectors(inspected, ports, host=self._setup.connector_host),
            )
        if status in _ENDED:
            code = int(state.get("ExitCode") or 0)
            notes = await self._exit_notes(work, inspected)
            return PlatformStatus(
                PlatformState.EXITED,
                f"the container exited with code {code}",
                exit_code=code,
                notes=notes,
            )
        if status == "removing":
            return PlatformStatus(
                PlatformState.RELEASING, "the container is being removed", next_check=_SOON
            )
        return PlatformStatus(
            PlatformState.FAILED,
            f"the container is {status}: {state.get('Error') or 'no reason given'}",
        )

    async def _exit_notes(self, work: Work, inspected: dict[str, Any]) -> tuple[PlatformNote, ...]:
        notes: list[PlatformNote] = []
        if (inspected.get("State") or {}).get("OOMKilled"):
            memory = offered_gib(work.component.spec.get("memory"))
            notes.append(
                PlatformNote(
                    "The kernel killed the executable: it ran out of its {memory} GiB of memory",
                    {"memory": str(memory)},
                    MessageLevel.WARN,
                )
            )
        lines = await self._runtime.output(str(inspected["Id"]), lines=self._settings.log_lines)
        if lines:
            notes.append(
                PlatformNote(
                    "The last {count} lines of its output:\n{output}",
                    {"count": str(len(lines)), "output": "\n".join(lines)},
                )
            )
        return tuple(notes)

    # ------------------------------------------------------------------ release

    async def release(self, uuid: UUID) -> PlatformStatus:
        """Stop (SIGTERM, then SIGKILL) and remove the container. The release is written
        down first, with how the container had ended by itself if it had: after a crash,
        a poll must not take the stop for the executable's own ending.
        """
        if self._tasks.busy(uuid):
            return PlatformStatus(PlatformState.RELEASING, next_check=_SOON)
        _, failure = self._tasks.finished(uuid)
        name = container_name(uuid)
        if failure is not None:
            # The stop failed: remove it by force (SIGKILL) now, or say why not.
            try:
                await self._runtime.remove(name)
            except PlatformError as again:
                return PlatformStatus(
                    PlatformState.FAILED, f"could not stop the container: {failure}; {again}"
                )
        found = self._records.get(uuid)
        inspected = await self._runtime.container(name)
        if found is None and inspected is None:
            return PlatformStatus(PlatformState.RELEASED, "nothing to release")
        if found is None or found.state not in (ObjectState.RELEASING, ObjectState.RELEASED):
            exit_code = None
            if inspected is not None and _status_of(inspected) in _ENDED:
                exit_code = int((inspected.get("State") or {}).get("ExitCode") or 0)
            found = self._records.put(
                LocalObject(
                    component=uuid,
                    session=found.session if found else _session_of(inspected),
                    role=ComponentRole.COMPUTE.value,
                    state=ObjectState.RELEASING,
                    exit_code=exit_code,
                )
            )
        if inspected is None:
            # Kept as a tombstone until the executable is released (forget_tombstone()).
            self._records.put(found.moved(ObjectState.RELEASED))
            return PlatformStatus(PlatformState.RELEASED, exit_code=found.exit_code)
        if _status_of(inspected) in _UP:
            self._tasks.spawn(uuid, self._stop_and_remove(str(inspected["Id"])))
            return PlatformStatus(
                PlatformState.RELEASING, next_check=_SOON, exit_code=found.exit_code
            )
        await self._runtime.remove(str(inspected["Id"]))
        self._listed_at = -math.inf
        self._records.put(found.moved(ObjectState.RELEASED))
        return PlatformStatus(PlatformState.RELEASED, exit_code=found.exit_code)

    async def _stop_and_remove(self, ident: str) -> None:
        await self._runtime.stop(ident, seconds=self._settings.stop_seconds.total_seconds())
        await self._runtime.remove(ident)
        self._listed_at = -math.inf

    def forget_tombstone(self, session: SessionRecord) -> None:
        """Drop the record of the session's released compute (its executable is released)."""
        compute = session.component(ComponentRole.COMPUTE)
        if compute is not None:
            kept = self._records.get(compute.uuid)
            if kept is not None and kept.state is ObjectState.RELEASED:
                self._records.remove(compute.uuid)

    # ------------------------------------------------------------------ restart

    async def owned(self) -> set[UUID]:
        """The compute resources this broker's containers are labelled for."""
        found: set[UUID] = set()
        for entry in await self._runtime.containers({INSTANCE_LABEL: self.instance}):
            uuid = _uuid((entry.get("Labels") or {}).get(COMPONENT_LABEL))
            if uuid is not None:
                found.add(uuid)
        return found

    async def remove_orphan(self, uuid: UUID) -> None:
        """Remove the container of ``uuid`` (if any) without asking how it ended."""
        await self._runtime.remove(container_name(uuid))
        self._listed_at = -math.inf


def container_user() -> str:
    """``uid:gid`` for a container that mounts storage: the broker's own, the owner of
    every folder and staged file it mounts (whatever user the image names).
    """
    return f"{os.geteuid()}:{os.getegid()}"


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _status_of(inspected: dict[str, Any]) -> str:
    return str((inspected.get("State") or {}).get("Status") or "").lower()


def _session_of(inspected: dict[str, Any] | None) -> UUID:
    labels = ((inspected or {}).get("Config") or {}).get("Labels") or {}
    return _uuid(labels.get(SESSION_LABEL)) or UUID(int=0)


def _executable_spec(work: Work) -> dict[str, Any]:
    executable = work.session.component(ComponentRole.EXECUTABLE)
    return executable.spec if executable is not None else {}


def _bindings(listed: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """A list entry's ``Ports`` in the shape of an inspect document's port bindings."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for item in listed.get("Ports") or []:
        if item.get("PublicPort"):
            key = f"{item.get('PrivatePort')}/{item.get('Type') or 'tcp'}"
            bindings.setdefault(key, []).append({"HostPort": str(item["PublicPort"])})
    return bindings
