"""The local container platform: docker-container executables run for real, through the
Docker Engine API of Docker or Podman on the broker's machine.

This module dispatches each call by component kind to the module that handles that kind:

- **executable** (:mod:`.executables`): the image must be on the machine (pulled when
  allowed) and have the requested digest; nothing to release (images are a shared cache).
- **storage** and **data** (:mod:`.directories`): a directory under ``<root>/storage/``,
  bind-mounted into the container; a simple data resource fetched by the broker into a
  directory of its storage in the background, SHA-256 recorded.
- **compute** (:mod:`.compute`): one container per compute resource, with the executable's
  command, the offered cores and memory, every volume mount, and no network unless ports
  are asked for.

Background work (pulls, downloads, stops) is kept per component by :mod:`.tasks`.

Every call is idempotent by component UUID, and what must outlive the broker is on disk
(:mod:`.records`) or in the runtime (labels), so a broker killed at any point finds its
objects again on restart: :meth:`objects` lists them, :meth:`release_orphan` removes those
no live component owns, and the engine adopts the others by polling them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from execbroker.background import TaskGroup
from execbroker.config import DockerSettings
from execbroker.exceptions import RequestRefusedError
from execbroker.model.records import ComponentRole
from execbroker.platforms.base import (
    Platform,
    PlatformHealth,
    PlatformState,
    PlatformStatus,
    PlatformUnavailableError,
    Work,
)
from execbroker.platforms.docker.compute import Compute, port_problems
from execbroker.platforms.docker.containers import INSTANCE_LABEL
from execbroker.platforms.docker.directories import (
    Data,
    Storage,
    data_problems,
    make_private_directory,
    release_directory,
)
from execbroker.platforms.docker.executables import Executables
from execbroker.platforms.docker.options import DockerSetup
from execbroker.platforms.docker.records import ObjectRecords, ObjectState
from execbroker.platforms.docker.runtime import ContainerRuntime
from execbroker.platforms.docker.tasks import ComponentTasks
from execbroker.platforms.extensions import unsupported_extensions

if TYPE_CHECKING:
    from execbroker.model.plan import Plan

__all__ = ["DockerPlatform"]

logger = logging.getLogger(__name__)


class DockerPlatform(Platform):
    """Runs sessions on a local container runtime (Docker or Podman): storage as host directories,
    data staged into them, the executable as a container.

    What it makes is labelled with this broker's instance and recorded in small files that
    outlive the broker, so a restarted broker adopts, resumes or removes it.
    """

    name = "docker"

    def __init__(
        self,
        settings: DockerSettings,
        setup: DockerSetup,
        *,
        tasks: TaskGroup,
        runtime: ContainerRuntime | None = None,
    ) -> None:
        self._settings = settings
        self._setup = setup
        self._runtime = runtime or ContainerRuntime(settings.host)
        self._records = ObjectRecords(setup.root / "objects")
        self._tasks = ComponentTasks(tasks)
        self._executables = Executables(settings, self._runtime, self._tasks)
        self._storage = Storage(setup.root / "storage", self._records)
        self._data = Data(settings, setup, self._records, self._tasks)
        self._compute = Compute(
            settings,
            setup,
            self._runtime,
            self._records,
            tasks=self._tasks,
            executables=self._executables,
        )

    @property
    def instance(self) -> str:
        """The value of this broker's instance label."""
        return self._compute.instance

    # ------------------------------------------------------------------ start and stop

    async def start(self) -> None:
        root = self._setup.root
        # Private all the way down: no other local user lists, reads or plants anything.
        # A container reaches its own storage through its bind mount, not through these.
        # Folders an older broker made open (0711, 0777) are closed here too.
        await asyncio.to_thread(make_private_directory, root)
        await self._storage.open()
        self._records.open()
        if not self._compute.instance:
            self._compute.instance = _instance_id(root / "instance")
        self._data.open()
        try:
            # A listing, not /version: Podman answers that by running its helpers (~0.5 s).
            found = await self._runtime.containers({INSTANCE_LABEL: self.instance})
        except PlatformUnavailableError as failure:
            raise RuntimeError(
                f"platform = docker, but the container runtime does not answer: {failure}"
            ) from failure
        logger.info(
            "container runtime connected",
            extra={
                "runtime": self._runtime.address,
                "instance": self.instance,
                "containers": len(found),
            },
        )

    async def stop(self) -> None:
        await self._tasks.stop()
        await self._data.close()
        await self._runtime.close()

    def health(self) -> PlatformHealth:
        """Whether the runtime answered the last call made to it."""
        if self._runtime.unreachable:
            return PlatformHealth(available=False, message=self._runtime.unreachable)
        return PlatformHealth(available=True)

    # ------------------------------------------------------------------ planning

    def shape(self, plan: Plan) -> Plan:
        """Refuse at once what this platform could only fail later: data it cannot stage,
        a host port it does not publish on.
        """
        problems = data_problems(plan, list(self._settings.file_roots))
        problems.extend(port_problems(plan, self._setup))
        problems.extend(unsupported_extensions(plan, platform=self.name))
        if problems:
            raise RequestRefusedError(problems)
        return plan

    # ------------------------------------------------------------------ the interface

    async def prepare(self, work: Work) -> PlatformStatus:
        match work.role:
            case ComponentRole.EXECUTABLE:
                return await self._executables.status(work)
            case ComponentRole.STORAGE:
                return await self._storage.prepare(work)
            case ComponentRole.DATA:
                return await self._data.status(work, start=True)
            case ComponentRole.COMPUTE:
                return await self._compute.prepare(work)
            case _:
                return PlatformStatus(PlatformState.READY)

    async def poll(self, work: Work) -> PlatformStatus:
        match work.role:
            case ComponentRole.EXECUTABLE:
                return await self._executables.status(work)
            case ComponentRole.STORAGE:
                return self._storage.poll(work)
            case ComponentRole.DATA:
                return await self._data.status(work, start=False)
            case ComponentRole.COMPUTE:
                return await self._compute.poll(work)
            case _:
                return PlatformStatus(PlatformState.READY)

    async def release(self, work: Work) -> PlatformStatus:
        match work.role:
            case ComponentRole.EXECUTABLE:
                # Images stay (a cache other sessions share); the compute's tombstone goes.
                self._compute.forget_tombstone(work.session)
                return PlatformStatus(PlatformState.RELEASED)
            case ComponentRole.STORAGE | ComponentRole.DATA:
                return await release_directory(work.uuid, self._records, self._tasks)
            case ComponentRole.COMPUTE:
                return await self._compute.release(work.uuid)
            case _:
                return PlatformStatus(PlatformState.RELEASED)

    # ------------------------------------------------------------------ restart

    async def objects(self) -> set[UUID]:
        found = await self._compute.owned()
        found.update(
            record.component
            for record in self._records.all()
            if record.state is not ObjectState.RELEASED
        )
        return found

    async def release_orphan(self, uuid: UUID) -> None:
        await self._tasks.cancel(uuid)
        await self._compute.remove_orphan(uuid)
        found = self._records.get(uuid)
        if found is not None and found.path is not None:
            await asyncio.to_thread(shutil.rmtree, found.path, ignore_errors=True)
        self._records.remove(uuid)


def _instance_id(path: Path) -> str:
    """The instance label value of this broker: made once, kept beside its objects."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = f"eb-{secrets.token_hex(6)}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(value + "\n")
        return value
