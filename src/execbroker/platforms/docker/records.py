"""What the platform itself keeps about its objects, in files that outlive the broker.

The container runtime remembers containers (and their labels); storage directories and
staged data are plain directories, and a release asked for just before a crash must be
told apart from a container that vanished. So each storage, data and compute object has
one small JSON file, ``<root>/objects/<component uuid>.json``, written atomically: a
SIGKILL leaves either the old record or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from uuid import UUID

__all__ = ["LocalObject", "ObjectRecords", "ObjectState"]


class ObjectState(StrEnum):
    """Where one storage, data or compute object of the platform is in its own life."""

    PREPARING = "preparing"  # storage: being made; data: being staged; compute: starting
    READY = "ready"  # storage made, data staged, container started
    FAILED = "failed"  # data: staging failed (``detail`` says why)
    RELEASING = "releasing"  # release asked for: stop and remove
    RELEASED = "released"  # compute only: a tombstone until its session lets it go


@dataclass(frozen=True)
class LocalObject:
    """The platform's record of one object, kept in its own file: what it is, for which session,
    and where it is.
    """

    component: UUID
    session: UUID
    role: str  # "storage", "data" or "compute"
    state: ObjectState
    path: str | None = None  # storage, data: the directory
    detail: str | None = None
    size_bytes: int | None = None  # storage: as offered; data: as staged
    file: str | None = None  # data: the staged file's name
    sha256: str | None = None  # data: the staged file's checksum
    exit_code: int | None = None  # compute: how it ended by itself, when it did

    @property
    def directory(self) -> Path:
        if self.path is None:
            raise ValueError(f"{self.role} {self.component} has no directory")
        return Path(self.path)

    def moved(self, state: ObjectState, **changes: object) -> LocalObject:
        return replace(self, state=state, **changes)  # type: ignore[arg-type]


class ObjectRecords:
    """The records under ``root``; every method is a quick local file operation."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def open(self) -> None:
        # Private: the file names are the storage folders' names (see .directories).
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._root.chmod(0o700)
        for stale in self._root.glob("*.tmp"):  # a write a crash interrupted
            stale.unlink(missing_ok=True)

    def _file(self, uuid: UUID) -> Path:
        return self._root / f"{uuid}.json"

    def get(self, uuid: UUID) -> LocalObject | None:
        try:
            text = self._file(uuid).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return _load(text)

    def put(self, record: LocalObject) -> LocalObject:
        document = asdict(record)
        document.update(component=str(record.component), session=str(record.session))
        target = self._file(record.component)
        temporary = target.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(json.dumps(document))
        os.replace(temporary, target)
        return record

    def remove(self, uuid: UUID) -> None:
        self._file(uuid).unlink(missing_ok=True)

    def all(self) -> list[LocalObject]:
        found: list[LocalObject] = []
        for path in sorted(self._root.glob("*.json")):
            try:
                found.append(_load(path.read_text(encoding="utf-8")))
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                continue  # removed meanwhile, or not ours
        return found


def _load(text: str) -> LocalObject:
    document = json.loads(text)
    return LocalObject(
        component=UUID(document["component"]),
        session=UUID(document["session"]),
        role=document["role"],
        state=ObjectState(document["state"]),
        path=document.get("path"),
        detail=document.get("detail"),
        size_bytes=document.get("size_bytes"),
        file=document.get("file"),
        sha256=document.get("sha256"),
        exit_code=document.get("exit_code"),
    )
