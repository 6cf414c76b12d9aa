"""Storage and data resources: directories on the container host.

- **storage**: a directory under ``<root>/storage/``, bind-mounted into the container. The
  runtime cannot cap a directory's size; what the broker stages into it is capped.
- **data**: a simple data resource, fetched by the broker into a directory of its storage
  in the background (a poll reports the progress), its SHA-256 recorded.

Both are plain directories with a record each (:mod:`.records`), so both are released the
same way: the directory goes, then the record.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import httpx

from execbroker.config import DockerSettings
from execbroker.egress import EgressPolicy, egress_client
from execbroker.model import kinds
from execbroker.model.graph import SessionGraph
from execbroker.model.messages import error
from execbroker.model.records import ComponentRecord, ComponentRole
from execbroker.platforms.base import (
    PlatformError,
    PlatformNote,
    PlatformState,
    PlatformStatus,
    Work,
)
from execbroker.platforms.docker.containers import offered_gib
from execbroker.platforms.docker.options import DockerSetup
from execbroker.platforms.docker.records import LocalObject, ObjectRecords, ObjectState
from execbroker.platforms.docker.staging import file_location_allowed, public_location, stage
from execbroker.platforms.docker.tasks import ComponentTasks

if TYPE_CHECKING:
    from execbroker.model.plan import Plan
    from execbroker.model.wire import MessageItem

__all__ = ["Data", "Storage", "data_problems", "make_private_directory", "release_directory"]

logger = logging.getLogger(__name__)

_GIB = 2**30
_SOON = timedelta(seconds=0.2)
_NAME_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def data_problems(plan: Plan, file_roots: list[Path]) -> list[MessageItem]:
    """What this platform could only fail later: data it cannot stage."""
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
        elif scheme == "file" and not file_location_allowed(location, file_roots):
            problems.append(
                error(
                    "{path}: {location} is not under a directory this broker may copy data from",
                    path=f"{path}/location",
                    location=public_location(location),
                )
            )
    return problems


class Storage:
    """Storage resources: one private directory each under ``root``."""

    def __init__(self, root: Path, records: ObjectRecords) -> None:
        self._root = root
        self._records = records

    async def open(self) -> None:
        await asyncio.to_thread(make_private_directory, self._root)

    async def prepare(self, work: Work) -> PlatformStatus:
        found = self._records.get(work.uuid)
        size = offered_gib(work.component.spec.get("size")) * _GIB
        if found is None:
            directory = self._root / str(work.uuid)
            await asyncio.to_thread(make_private_directory, directory)
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

    def poll(self, work: Work) -> PlatformStatus:
        found = self._records.get(work.uuid)
        if found is None or found.state is not ObjectState.READY:
            return PlatformStatus(PlatformState.MISSING, "the storage directory is gone")
        return PlatformStatus(PlatformState.READY)


class Data:
    """Simple data resources, each staged in the background into a directory of its
    storage.
    """

    def __init__(
        self,
        settings: DockerSettings,
        setup: DockerSetup,
        records: ObjectRecords,
        tasks: ComponentTasks,
    ) -> None:
        self._settings = settings
        self._setup = setup
        self._records = records
        self._tasks = tasks
        self._http: httpx.AsyncClient | None = None

    def open(self) -> None:
        # Redirects are followed by staging itself, each hop checked by the egress policy.
        self._http = egress_client(
            EgressPolicy(self._setup.egress_allow),
            seconds=self._settings.data_timeout.total_seconds(),
            headers={"User-Agent": "execbroker-staging"},
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def status(self, work: Work, *, start: bool) -> PlatformStatus:
        """Where staging is; with ``start``, begin (or resume) it if it has not ended."""
        found = self._records.get(work.uuid)
        if found is None:
            if not start:
                return PlatformStatus(PlatformState.MISSING, "the staged data is gone")
            held_by = SessionGraph.of(work.session).storage_of(work.component)
            storage = self._records.get(held_by.uuid) if held_by is not None else None
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
                if not self._tasks.busy(work.uuid):
                    # Not started yet, or a broker restart interrupted it: (re)start it.
                    self._tasks.spawn(work.uuid, self._stage(found, work.component))
                return PlatformStatus(PlatformState.PREPARING, next_check=_SOON)
            case _:
                return PlatformStatus(PlatformState.RELEASING, next_check=_SOON)

    async def _stage(self, found: LocalObject, component: ComponentRecord) -> None:
        location = str(component.spec.get("location") or "")
        cap = min(self._settings.max_data_bytes, found.size_bytes or self._settings.max_data_bytes)
        if self._http is None:
            raise RuntimeError("the docker platform is not started")
        try:
            staged = await stage(
                location,
                found.directory,
                http=self._http,
                cap=cap,
                file_roots=list(self._settings.file_roots),
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


async def release_directory(
    uuid: UUID, records: ObjectRecords, tasks: ComponentTasks
) -> PlatformStatus:
    """Release a storage or data resource: stop its staging, remove its directory, then
    its record.
    """
    await tasks.cancel(uuid)
    found = records.get(uuid)
    if found is None:
        return PlatformStatus(PlatformState.RELEASED, "nothing to release")
    if found.state is not ObjectState.RELEASING:
        found = records.put(found.moved(ObjectState.RELEASING))
    if found.path is not None:
        try:
            await asyncio.to_thread(_remove_tree, found.directory)
        except OSError as failure:
            return PlatformStatus(
                PlatformState.FAILED,
                f"could not remove {found.role} directory {found.path}: "
                f"{failure.strerror or type(failure).__name__}",
            )
    records.remove(uuid)
    return PlatformStatus(PlatformState.RELEASED)


def make_private_directory(directory: Path) -> None:
    """A folder only the broker's OS user can reach. Containers that mount one run as that
    user (:func:`~execbroker.platforms.docker.compute.container_user`), so they read and
    write it as its owner.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)


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


def _remove_tree(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
