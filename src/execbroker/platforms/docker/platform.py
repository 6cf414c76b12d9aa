"""The local container platform: docker-container executables run for real, through the
Docker Engine API of Docker or Podman on the broker's machine.

- **executable**: the image must be on the machine (pulled when allowed) and have the
  requested digest; nothing to release (images are a shared cache).
- **storage**: a directory under ``<root>/storage/``, bind-mounted into the container.
  The runtime cannot cap a directory's size; what the broker stages into it is capped.
- **data**: a simple data resource, fetched by the broker into a directory of its storage
  (in the background: :meth:`poll` reports the progress), SHA-256 recorded.
- **compute**: one container per compute resource, named and labelled for it, with the
  executable's command, entrypoint and environment, the offered cores and memory, every
  volume mount at its path and mode, and no network unless ports are asked for.

Every call is idempotent by component UUID, and what must outlive the broker is on disk
(:mod:`.records`) or in the runtime (labels), so a broker killed at any point finds its
objects again on restart: :meth:`objects` lists them, :meth:`release_orphan` removes those
no live component owns, and the engine adopts the others by polling them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx

from execbroker.egress import EgressPolicy, egress_client
from execbroker.exceptions import RequestRefusedError
from execbroker.model import kinds
from execbroker.model.messages import error
from execbroker.model.phases import MessageLevel
from execbroker.model.records import ComponentRecord, ComponentRole
from execbroker.platforms.base import (
    Platform,
    PlatformError,
    PlatformHealth,
    PlatformNote,
    PlatformState,
    PlatformStatus,
    PlatformUnavailableError,
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
    port_connectors,
    requested_ports,
)
from execbroker.platforms.docker.images import digest_matches, image_digests, registry_of
from execbroker.platforms.docker.options import DockerOptions
from execbroker.platforms.docker.ports import PortClaims
from execbroker.platforms.docker.records import LocalObject, ObjectRecords, ObjectState
from execbroker.platforms.docker.runtime import ContainerRuntime
from execbroker.platforms.docker.staging import file_location_allowed, public_location, stage

if TYPE_CHECKING:
    from execbroker.model.plan import Plan
    from execbroker.model.wire import MessageItem

__all__ = ["DockerPlatform"]

logger = logging.getLogger(__name__)

_GIB = 2**30
_SOON = timedelta(seconds=0.2)
_PULL_CHECK = timedelta(seconds=1)
_UP = ("running", "paused", "restarting")
_ENDED = ("exited", "stopped")
_NOT_YET = ("created", "configured", "initialized")
_NAME_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class DockerPlatform(Platform):
    name = "docker"

    def __init__(self, options: DockerOptions, *, runtime: ContainerRuntime | None = None) -> None:
        self._options = options
        self._runtime = runtime or ContainerRuntime(options.host)
        self._records = ObjectRecords(options.root / "objects")
        self._storage_root = options.root / "storage"
        self._instance = options.instance or ""
        self._http: httpx.AsyncClient | None = None
        # Background work by component: an image pull, a data download, a container stop.
        self._tasks: dict[UUID, asyncio.Task[None]] = {}
        # One container listing shared by every poll, refreshed at most every few moments.
        self._listing: dict[str, dict[str, Any]] = {}
        self._listed_at = -math.inf
        self._listing_lock = asyncio.Lock()
        # Host ports picked for containers being created, until they are started.
        self._ports = PortClaims(options.port_range, options.publish_address)

    @property
    def instance(self) -> str:
        """The value of this broker's instance label."""
        return self._instance

    # ------------------------------------------------------------------ start and stop

    async def start(self) -> None:
        root = self._options.root
        # Private all the way down: no other local user lists, reads or plants anything.
        # A container reaches its own storage through its bind mount, not through these.
        # Folders an older broker made open (0711, 0777) are closed here too.
        for directory in (root, self._storage_root):
            await asyncio.to_thread(_make_directory, directory)
        self._records.open()
        if not self._instance:
            self._instance = _instance_id(root / "instance")
        # Redirects are followed by staging itself, each hop checked by the egress policy.
        self._http = egress_client(
            EgressPolicy(self._options.egress_allow),
            seconds=self._options.data_timeout,
            headers={"User-Agent": "execbroker-staging"},
        )
        try:
            # A listing, not /version: Podman answers that by running its helpers (~0.5 s).
            found = await self._runtime.containers({INSTANCE_LABEL: self._instance})
        except PlatformUnavailableError as failure:
            raise RuntimeError(
                f"platform = docker, but the container runtime does not answer: {failure}"
            ) from failure
        logger.info(
            "container runtime connected",
            extra={
                "runtime": self._runtime.address,
                "instance": self._instance,
                "containers": len(found),
            },
        )

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        await self._runtime.close()

    def health(self) -> PlatformHealth:
        """Whether the runtime answered the last call made to it."""
        if self._runtime.unreachable:
            return PlatformHealth(available=False, message=self._runtime.unreachable)
        return PlatformHealth(available=True)

    # ------------------------------------------------------------------ planning

    def shape(self, plan: Plan) -> Plan:
        """Refuse at once what this platform could only fail later: data it cannot stage."""
        problems = []
        for index, data in enumerate(plan.data):
            path = f"/data/{index}"
            if data.kind != kinds.DATA_SIMPLE:
                problems.append(
                    error(
                        "{path}: the docker platform stages only simple data resources "
                        "(http, https or file locations), not {kind}",
                        path=f"{path}/kind",
                        kind=kinds.short_kind(data.kind),
                    )
                )
                continue
            location = str(data.spec.get("location") or "")
            scheme = location.strip().partition(":")[0].lower()
            if scheme not in ("http", "https", "file"):
                problems.append(
                    error(
                        "{path}: the docker platform stages http, https or file locations, "
                        "not {scheme}",
                        path=f"{path}/location",
                        scheme=scheme or "this",
                    )
                )
            elif scheme == "file" and not file_location_allowed(
                location, list(self._options.file_roots)
            ):
                problems.append(
                    error(
                        "{path}: {location} is not under a directory this broker may copy "
                        "data from",
                        path=f"{path}/location",
                        location=public_location(location),
                    )
                )
        problems.extend(self._port_problems(plan))
        if problems:
            raise RequestRefusedError(problems)
        return plan

    def _port_problems(self, plan: Plan) -> list[MessageItem]:
        """A host port the request names must be in the range this broker publishes on."""
        network = plan.executable.spec.get("network") or {}
        problems = []
        allowed = self._options.port_range
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

    # ------------------------------------------------------------------ the interface

    async def prepare(self, work: Work) -> PlatformStatus:
        match work.role:
            case ComponentRole.EXECUTABLE:
                return await self._executable(work)
            case ComponentRole.STORAGE:
                return await self._prepare_storage(work)
            case ComponentRole.DATA:
                return await self._data(work, start=True)
            case ComponentRole.COMPUTE:
                return await self._prepare_compute(work)
            case _:
                return PlatformStatus(PlatformState.READY)

    async def poll(self, work: Work) -> PlatformStatus:
        match work.role:
            case ComponentRole.EXECUTABLE:
                return await self._executable(work)
            case ComponentRole.STORAGE:
                found = self._records.get(work.uuid)
                if found is None or found.state is not ObjectState.READY:
                    return PlatformStatus(PlatformState.MISSING, "the storage directory is gone")
                return PlatformStatus(PlatformState.READY)
            case ComponentRole.DATA:
                return await self._data(work, start=False)
            case ComponentRole.COMPUTE:
                return await self._poll_compute(work)
            case _:
                return PlatformStatus(PlatformState.READY)

    async def release(self, work: Work) -> PlatformStatus:
        match work.role:
            case ComponentRole.EXECUTABLE:
                # Images stay (a cache other sessions share); the compute's record goes.
                compute = work.session.component(ComponentRole.COMPUTE)
                if compute is not None:
                    kept = self._records.get(compute.uuid)
                    if kept is not None and kept.state is ObjectState.RELEASED:
                        self._records.remove(compute.uuid)
                return PlatformStatus(PlatformState.RELEASED)
            case ComponentRole.STORAGE | ComponentRole.DATA:
                return await self._release_directory(work.uuid)
            case ComponentRole.COMPUTE:
                return await self._release_compute(work.uuid)
            case _:
                return PlatformStatus(PlatformState.RELEASED)

    async def objects(self) -> set[UUID]:
        found: set[UUID] = set()
        for entry in await self._runtime.containers({INSTANCE_LABEL: self._instance}):
            label = (entry.get("Labels") or {}).get(COMPONENT_LABEL)
            uuid = _uuid(label)
            if uuid is not None:
                found.add(uuid)
        found.update(
            record.component
            for record in self._records.all()
            if record.state is not ObjectState.RELEASED
        )
        return found

    async def release_orphan(self, uuid: UUID) -> None:
        await self._cancel(uuid)
        await self._runtime.remove(container_name(uuid))
        self._listed_at = -math.inf
        found = self._records.get(uuid)
        if found is not None and found.path is not None:
            await asyncio.to_thread(shutil.rmtree, found.path, ignore_errors=True)
        self._records.remove(uuid)

    # ------------------------------------------------------------------ background work

    def _spawn(self, uuid: UUID, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"docker-{uuid}")
        self._tasks[uuid] = task

    async def _cancel(self, uuid: UUID) -> None:
        task = self._tasks.pop(uuid, None)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _finished(self, uuid: UUID) -> tuple[bool, BaseException | None]:
        """Whether background work for ``uuid`` ran and ended (and how), forgetting it."""
        task = self._tasks.get(uuid)
        if task is None or not task.done():
            return False, None
        del self._tasks[uuid]
        if task.cancelled():
            return True, None
        return True, task.exception()

    def _busy(self, uuid: UUID) -> bool:
        task = self._tasks.get(uuid)
        return task is not None and not task.done()

    # ------------------------------------------------------------------ executables

    async def _executable(self, work: Work) -> PlatformStatus:
        """Present (and with the requested digest): READY; else pull it where allowed."""
        if self._busy(work.uuid):
            return PlatformStatus(PlatformState.PREPARING, next_check=_PULL_CHECK)
        pulled, failure = self._finished(work.uuid)
        if failure is not None:
            return PlatformStatus(PlatformState.FAILED, str(failure))
        image = work.component.spec.get("image") or {}
        locations = [str(item).strip() for item in image.get("locations") or []]
        locations = [item for item in locations if item]
        digest = image.get("digest")
        found = await self._local_image(locations, digest)
        if isinstance(found, PlatformStatus):
            return found
        if found is not None:
            location, attributes = found
            return PlatformStatus(
                PlatformState.READY,
                notes=(
                    PlatformNote(
                        "Image {image} is on the platform as {id}",
                        {"image": location, "id": str(attributes.get("Id", "?"))},
                    ),
                ),
            )
        if pulled:
            return PlatformStatus(
                PlatformState.FAILED, f"pulled {', '.join(locations)} yet found no such image"
            )
        pullable = [item for item in locations if self._may_pull(item)]
        if not pullable:
            reason = (
                "pulling images is disabled"
                if not self._options.pull
                else "pulling is allowed only from " + ", ".join(self._options.pull_registries)
            )
            return PlatformStatus(
                PlatformState.FAILED,
                f"image {', '.join(locations) or '(none)'} is not on this machine and {reason}",
            )
        self._spawn(work.uuid, self._runtime.pull(pullable[0]))
        return PlatformStatus(PlatformState.PREPARING, next_check=_PULL_CHECK)

    def _may_pull(self, location: str) -> bool:
        if not self._options.pull:
            return False
        allowed = self._options.pull_registries
        return not allowed or registry_of(location) in {r.lower() for r in allowed}

    async def _local_image(
        self, locations: list[str], digest: str | None
    ) -> tuple[str, dict[str, Any]] | PlatformStatus | None:
        """The first location present here that has ``digest`` (when given); a FAILED status
        when images are present but none has it; None when none is present."""
        mismatch: tuple[str, dict[str, Any]] | None = None
        for location in locations:
            attributes = await self._runtime.image(location)
            if attributes is None:
                continue
            if digest is None or digest_matches(attributes, digest):
                return location, attributes
            mismatch = mismatch or (location, attributes)
        if mismatch is not None:
            location, attributes = mismatch
            return PlatformStatus(
                PlatformState.FAILED,
                f"image {location} has digest {', '.join(image_digests(attributes))}, "
                f"not the requested {digest}",
            )
        return None

    # ------------------------------------------------------------------ storage and data

    async def _prepare_storage(self, work: Work) -> PlatformStatus:
        found = self._records.get(work.uuid)
        size = _gib(work.component.spec.get("size")) * _GIB
        if found is None:
            directory = self._storage_root / str(work.uuid)
            await asyncio.to_thread(_make_directory, directory)
            found = self._records.put(
                LocalObject(
                    component=work.uuid,
                    session=work.session.uuid,
                    role=ComponentRole.STORAGE.value,
                    state=ObjectState.READY,
                    path=str(directory),
                    size_bytes=size,
                )
            )
        if found.state is not ObjectState.READY:
            return PlatformStatus(PlatformState.RELEASING, next_check=_SOON)
        return PlatformStatus(
            PlatformState.READY,
            notes=(
                PlatformNote(
                    "{name} is a directory on the container host: the runtime does not cap "
                    "its size, staged data is capped at the {size} GiB offered",
                    {"name": work.component.name, "size": str(size // _GIB)},
                ),
            ),
        )

    async def _data(self, work: Work, *, start: bool) -> PlatformStatus:
        found = self._records.get(work.uuid)
        if found is None:
            if not start:
                return PlatformStatus(PlatformState.MISSING, "the staged data is gone")
            held_by = _uuid(work.component.spec.get("storage"))
            storage = self._records.get(held_by) if held_by else None
            if storage is None or storage.state is not ObjectState.READY:
                return PlatformStatus(
                    PlatformState.FAILED, "its storage resource is not on the platform"
                )
            found = self._records.put(
                LocalObject(
                    component=work.uuid,
                    session=work.session.uuid,
                    role=ComponentRole.DATA.value,
                    state=ObjectState.PREPARING,
                    path=str(storage.directory / _directory_name(work.component)),
                    size_bytes=storage.size_bytes,
                )
            )
        match found.state:
            case ObjectState.READY:
                return PlatformStatus(PlatformState.READY, notes=_staged_notes(work, found))
            case ObjectState.FAILED:
                return PlatformStatus(PlatformState.FAILED, found.detail or "staging failed")
            case ObjectState.PREPARING:
                if not self._busy(work.uuid):
                    # Not started yet, or a broker restart interrupted it: (re)start it.
                    self._tasks.pop(work.uuid, None)
                    self._spawn(work.uuid, self._stage(found, work.component))
                return PlatformStatus(PlatformState.PREPARING, next_check=_SOON)
            case _:
                return PlatformStatus(PlatformState.RELEASING, next_check=_SOON)

    async def _stage(self, found: LocalObject, component: ComponentRecord) -> None:
        location = str(component.spec.get("location") or "")
        cap = min(self._options.max_data_bytes, found.size_bytes or self._options.max_data_bytes)
        if self._http is None:
            raise RuntimeError("the docker platform is not started")
        try:
            staged = await stage(
                location,
                found.directory,
                http=self._http,
                cap=cap,
                file_roots=list(self._options.file_roots),
            )
        except PlatformError as failure:
            self._records.put(found.moved(ObjectState.FAILED, detail=str(failure)))
            return
        except Exception as failure:  # whatever it was, the data failed
            # The type only: a message could quote the location, credentials and all.
            logger.error(  # noqa: TRY400 - no traceback, for the same reason
                "staging failed",
                extra={"component": str(component.uuid), "error": type(failure).__name__},
            )
            self._records.put(
                found.moved(ObjectState.FAILED, detail=f"staging failed: {type(failure).__name__}")
            )
            return
        self._records.put(
            found.moved(
                ObjectState.READY, file=staged.name, size_bytes=staged.size, sha256=staged.sha256
            )
        )

    async def _release_directory(self, uuid: UUID) -> PlatformStatus:
        await self._cancel(uuid)
        found = self._records.get(uuid)
        if found is None:
            return PlatformStatus(PlatformState.RELEASED, "nothing to release")
        if found.state is not ObjectState.RELEASING:
            found = self._records.put(found.moved(ObjectState.RELEASING))
        if found.path is not None:
            try:
                await asyncio.to_thread(_remove_tree, found.directory)
            except OSError as failure:
                return PlatformStatus(
                    PlatformState.FAILED,
                    f"could not remove {found.role} directory {found.path}: "
                    f"{failure.strerror or type(failure).__name__}",
                )
        self._records.remove(uuid)
        return PlatformStatus(PlatformState.RELEASED)

    # ------------------------------------------------------------------ compute

    async def _prepare_compute(self, work: Work) -> PlatformStatus:
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
            return await self._release_compute(work.uuid)  # asked before a crash: go on
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
        found = await self._local_image(locations, image.get("digest"))
        if isinstance(found, PlatformStatus):
            return found
        if found is None:
            return PlatformStatus(
                PlatformState.FAILED, f"image {', '.join(locations)} is no longer on this machine"
            )
        mounts: list[Mount] = []
        for volume in session.components_of(ComponentRole.VOLUME):
            mount = self._mount(work, volume)
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
                    f"no free host port in {self._options.port_range} to publish port "
                    f"{port.key} on",
                )
            claimed.append((picked, port.transport))
            host_ports[port.key] = picked
        return container_config(
            image=str(found[1]["Id"]),
            executable=executable.spec,
            compute=work.component.spec,
            mounts=mounts,
            labels={
                INSTANCE_LABEL: self._instance,
                SESSION_LABEL: str(session.uuid),
                COMPONENT_LABEL: str(work.uuid),
            },
            limits=ContainerLimits(
                network=self._options.network,
                publish_address=self._options.publish_address,
                pids=self._options.pids_limit,
            ),
            host_ports=host_ports,
            # The mounted folders are the broker's user's, 0700: the container is that user.
            user=container_user() if mounts else None,
        )

    def _mount(self, work: Work, volume: ComponentRecord) -> Mount | str:
        """The bind mount for a volume component, or why it cannot be made."""
        reference = str(volume.spec.get("resource") or "")
        target = next((c for c in work.session.components if str(c.uuid) == reference), None)
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

    async def _poll_compute(self, work: Work) -> PlatformStatus:
        found = self._records.get(work.uuid)
        if found is not None and found.state in (ObjectState.RELEASING, ObjectState.RELEASED):
            return await self._release_compute(work.uuid)
        name = container_name(work.uuid)
        listed = (await self._listed()).get(name)
        if listed is not None and str(listed.get("State")) in _UP:
            ports = requested_ports(_executable_spec(work))
            connectors = port_connectors(
                {"NetworkSettings": {"Ports": _bindings(listed)}},
                ports,
                host=self._options.connector_host,
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
        """This broker's containers by name, from one listing shared by concurrent polls."""
        if time.monotonic() - self._listed_at < self._options.listing_seconds:
            return self._listing
        async with self._listing_lock:
            if time.monotonic() - self._listed_at >= self._options.listing_seconds:
                entries = await self._runtime.containers({INSTANCE_LABEL: self._instance})
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
                connectors=port_connectors(inspected, ports, host=self._options.connector_host),
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
            return PlatformStatus(PlatformState.RELEASING, next_check=_SOON)
        return PlatformStatus(
            PlatformState.FAILED,
            f"the container is {status}: {state.get('Error') or 'no reason given'}",
        )

    async def _exit_notes(self, work: Work, inspected: dict[str, Any]) -> tuple[PlatformNote, ...]:
        notes: list[PlatformNote] = []
        if (inspected.get("State") or {}).get("OOMKilled"):
            memory = _gib(work.component.spec.get("memory"))
            notes.append(
                PlatformNote(
                    "The kernel killed the executable: it ran out of its {memory} GiB of memory",
                    {"memory": str(memory)},
                    MessageLevel.WARN,
                )
            )
        lines = await self._runtime.output(str(inspected["Id"]), lines=self._options.log_lines)
        if lines:
            notes.append(
                PlatformNote(
                    "The last {count} lines of its output:\n{output}",
                    {"count": str(len(lines)), "output": "\n".join(lines)},
                )
            )
        return tuple(notes)

    async def _release_compute(self, uuid: UUID) -> PlatformStatus:
        """Stop (SIGTERM, then SIGKILL) and remove the container. The release is written
        down first, with how the container had ended by itself if it had: after a crash,
        a poll must not take the stop for the executable's own ending."""
        if self._busy(uuid):
            return PlatformStatus(PlatformState.RELEASING, next_check=_SOON)
        _, failure = self._finished(uuid)
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
            # Kept as a tombstone until the executable is released (see release()).
            self._records.put(found.moved(ObjectState.RELEASED))
            return PlatformStatus(PlatformState.RELEASED, exit_code=found.exit_code)
        if _status_of(inspected) in _UP:
            self._spawn(uuid, self._stop_and_remove(str(inspected["Id"])))
            return PlatformStatus(
                PlatformState.RELEASING, next_check=_SOON, exit_code=found.exit_code
            )
        await self._runtime.remove(str(inspected["Id"]))
        self._listed_at = -math.inf
        self._records.put(found.moved(ObjectState.RELEASED))
        return PlatformStatus(PlatformState.RELEASED, exit_code=found.exit_code)

    async def _stop_and_remove(self, ident: str) -> None:
        await self._runtime.stop(ident, seconds=self._options.stop_seconds)
        await self._runtime.remove(ident)
        self._listed_at = -math.inf


# ---------------------------------------------------------------------- small helpers


def _instance_id(path: Path) -> str:
    """This broker's instance label value: made once, kept beside its objects."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = f"eb-{secrets.token_hex(6)}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(value + "\n")
        return value


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _gib(amount: object) -> int:
    """The offered amount of a ``{min, max}`` pair (the offer sets both to the same)."""
    if isinstance(amount, dict):
        return max(1, int(amount.get("min") or amount.get("max") or 1))
    return 1


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


def _directory_name(component: ComponentRecord) -> str:
    """The data resource's directory in its storage: its name where that is safe."""
    safe = _NAME_SAFE.sub("_", component.name).strip("._") or "data"
    return safe if safe == component.name else f"{safe}-{component.uuid.hex[:8]}"


def _staged_notes(work: Work, found: LocalObject) -> tuple[PlatformNote, ...]:
    return (
        PlatformNote(
            "Staged {file} ({size} bytes) from {location}; sha256 {sha256}",
            {
                "file": found.file or "?",
                "size": str(found.size_bytes or 0),
                "location": public_location(str(work.component.spec.get("location") or "")),
                "sha256": found.sha256 or "?",
            },
        ),
    )


def _make_directory(directory: Path) -> None:
    """A folder only the broker's OS user can reach. Containers that mount one run as that
    user (:func:`container_user`), so they read and write it as its owner."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)


def container_user() -> str:
    """``uid:gid`` for a container that mounts storage: the broker's own, the owner of
    every folder and staged file it mounts (whatever user the image names)."""
    return f"{os.geteuid()}:{os.getegid()}"


def _remove_tree(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
