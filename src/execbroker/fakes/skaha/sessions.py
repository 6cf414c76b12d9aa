"""One fake session: a Kubernetes Job reduced to timestamps, and what Skaha derives from it.

Nothing here advances by itself. A session's stage at any instant follows from when it was
admitted, how long its image pull and run take, and whether it crashed, expired or was
deleted; the fake asks at request time with its clock's ``now`` (SKAHA.md §5.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from execbroker.fakes.skaha.config import INTERACTIVE_TYPES, SkahaTimings

__all__ = ["FakeSession", "Snapshot", "Stage", "iso_seconds"]


class Stage(StrEnum):
    """Where the Job is; ``status`` maps these onto Skaha's status strings (§1.6)."""

    QUEUED = "queued"
    """Suspended or not yet scheduled: Pending, no ``startTime``, no pod."""
    PULLING = "pulling"
    """Started, pod not ready (image pull, probes): Pending with ``startTime``."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATING = "terminating"
    GONE = "gone"
    """Deleted or garbage-collected: 404."""

    @property
    def status(self) -> str:
        """The Skaha ``status`` string."""
        return _STATUS[self]


_STATUS = {
    Stage.QUEUED: "Pending",
    Stage.PULLING: "Pending",
    Stage.RUNNING: "Running",
    Stage.COMPLETED: "Completed",
    Stage.FAILED: "Failed",
    Stage.TERMINATING: "Terminating",
    Stage.GONE: "Gone",
}


def iso_seconds(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``, as Skaha prints times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Snapshot:
    """A session's derived state at one instant."""

    stage: Stage
    start_time: datetime | None = None
    running_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    """Set once finished; None when the deadline killed it."""
    expiry_time: datetime | None = None


@dataclass
class FakeSession:
    """The fake's record of one session (one Job); times are aware UTC."""

    id: str
    user: str
    uid: int
    name: str
    session_type: str
    image: str
    created_at: datetime
    admitted_at: datetime | None
    """When the Job starts (``startTime``); None while held in a starved queue."""
    pull: timedelta
    pull_fails: bool
    run: timedelta | None
    """Headless run length; None runs until the deadline (interactive types)."""
    exit_code: int
    active_deadline: timedelta
    cores: int | None = None
    ram: int | None = None
    gpus: int | None = None
    cmd: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    crashed_at: datetime | None = None
    crash_exit_code: int = 137
    deleted_at: datetime | None = None
    preempted: bool = False
    """Ended by Kubernetes (``FakeSkaha.preempt``), not by a DELETE: said in its events."""
    forgotten: bool = False

    @property
    def interactive(self) -> bool:
        return self.session_type in INTERACTIVE_TYPES

    def ttl(self, timings: SkahaTimings) -> timedelta:
        return timings.ttl_interactive if self.interactive else timings.ttl_headless

    def at(self, now: datetime, timings: SkahaTimings) -> Snapshot:
        """The session as Kubernetes would show it at ``now``."""
        if self.forgotten:
            return Snapshot(Stage.GONE)
        if self.deleted_at is not None and now >= self.deleted_at:
            before = self._undeleted_at(self.deleted_at, timings)
            within = now < self.deleted_at + timings.terminating
            if before.stage in {Stage.PULLING, Stage.RUNNING} and within:
                return Snapshot(
                    Stage.TERMINATING,
                    start_time=before.start_time,
                    running_at=before.running_at,
                    expiry_time=before.expiry_time,
                )
            return Snapshot(Stage.GONE)
        return self._undeleted_at(now, timings)

    def _undeleted_at(self, now: datetime, timings: SkahaTimings) -> Snapshot:
        start = self.admitted_at
        if start is None or now < start:
            return Snapshot(Stage.QUEUED)
        expiry = start + self.active_deadline
        running_at = None if self.pull_fails else start + self.pull
        ends: list[tuple[datetime, int | None]] = [(expiry, None)]
        if running_at is not None and self.run is not None:
            ends.append((running_at + self.run, self.exit_code))
        if self.crashed_at is not None:
            ends.append((self.crashed_at, self.crash_exit_code))
        finished_at, code = min(ends, key=lambda end: end[0])
        if now >= finished_at:
            if now >= finished_at + self.ttl(timings):
                return Snapshot(Stage.GONE)
            stage = Stage.COMPLETED if code == 0 else Stage.FAILED
            started = running_at if running_at is not None and running_at <= finished_at else None
            return Snapshot(stage, start, started, finished_at, code, expiry)
        if running_at is not None and now >= running_at:
            return Snapshot(Stage.RUNNING, start, running_at, expiry_time=expiry)
        return Snapshot(Stage.PULLING, start, expiry_time=expiry)

    def connect_url(self, base: str, home_base_path: str) -> str:
        """The ``connectURL`` for this type (§1.11); ``""`` for headless."""
        sid = self.id
        match self.session_type:
            case "notebook":
                home = f"{home_base_path}/{self.user}"
                return f"{base}/session/notebook/{sid}/lab/tree/{home}?token={sid}"
            case "desktop":
                return f"{base}/session/desktop/{sid}/?password={sid}&path=session/desktop/{sid}/"
            case "carta":
                return f"{base}/session/carta/{sid}/"
            case "contributed":
                return f"{base}/session/contrib/{sid}/"
            case "firefly":
                return f"{base}/session/firefly/{sid}/firefly/"
            case _:
                return ""

    def to_json(
        self,
        snapshot: Snapshot,
        *,
        base: str,
        home_base_path: str,
        metrics_missing: bool,
        start_without_seconds: bool,
    ) -> dict[str, Any]:
        """The Gson rendering of Skaha's ``Session``: absent fields are omitted (§1.5)."""
        fixed = self.ram is not None
        document: dict[str, Any] = {
            "id": self.id,
            "userid": self.user,
            "runAsUID": str(self.uid),
            "runAsGID": str(self.uid),
            "supplementalGroups": [],
            "image": self.image,
            "type": self.session_type,
            "status": snapshot.stage.status,
            "name": self.name,
        }
        if snapshot.start_time is not None:
            start = iso_seconds(snapshot.start_time)
            document["startTime"] = (
                snapshot.start_time.strftime("%Y-%m-%dT%H:%MZ") if start_without_seconds else start
            )
        if snapshot.expiry_time is not None:
            document["expiryTime"] = iso_seconds(snapshot.expiry_time)
        running = snapshot.stage is Stage.RUNNING
        document["connectURL"] = self.connect_url(base, home_base_path) if running else ""
        if fixed:
            document["requestedRAM"] = f"{self.ram}G"
            document["requestedCPUCores"] = str(self.cores if self.cores is not None else 1)
        document["requestedGPUCores"] = str(self.gpus or 0)
        if not metrics_missing:
            document["ramInUse"] = "0.25G" if running else "<none>"
            document["cpuCoresInUse"] = "0.012" if running else "<none>"
        document["isFixedResources"] = fixed
        return document

    def public_json(self, snapshot: Snapshot, *, start_without_seconds: bool) -> dict[str, Any]:
        """The ``view=all`` rendering: userid, type, status, startTime only."""
        document: dict[str, Any] = {
            "userid": self.user,
            "type": self.session_type,
            "status": snapshot.stage.status,
        }
        if snapshot.start_time is not None:
            document["startTime"] = snapshot.start_time.strftime(
                "%Y-%m-%dT%H:%MZ" if start_without_seconds else "%Y-%m-%dT%H:%M:%SZ"
            )
        return document

    def logs(self, snapshot: Snapshot) -> str:
        """What ``kubectl logs`` prints: nothing until the container has started."""
        if snapshot.running_at is None:
            return ""
        lines = [f"fake container for session {self.id} (image {self.image})"]
        if self.interactive:
            lines.append(f"{self.session_type} server listening for session {self.id}")
        else:
            command = " ".join([self.cmd or "<image entrypoint>", *self.args])
            lines.append(f"command: {command}")
            lines.extend(f"env: {key}={value}" for key, value in self.env.items())
        if snapshot.finished_at is not None:
            if snapshot.exit_code is None:
                lines.append("killed: active deadline exceeded")
            else:
                lines.append(f"exited with code {snapshot.exit_code}")
        return "\n".join(lines) + "\n"

    def events(self, snapshot: Snapshot, now: datetime, events_ttl: timedelta) -> str | None:
        """The ``view=events`` table, ``<none>`` when empty, None while there is no pod."""
        start = snapshot.start_time
        if start is None:
            return None
        pod = f"{self.session_type}-{self.user}-{self.id}"
        pulled_at = start + self.pull
        rows: list[tuple[str, str, str, datetime, datetime]] = [
            (
                "Normal",
                "Scheduled",
                f"Successfully assigned skaha-workload/{pod} to node-1",
                start,
                start,
            ),
            ("Normal", "Pulling", f'Pulling image "{self.image}"', start, start),
        ]
        if self.pull_fails:
            if now >= pulled_at:
                failure = f'Failed to pull image "{self.image}": manifest unknown'
                backoff = f'Back-off pulling image "{self.image}"'
                rows += [
                    ("Warning", "Failed", failure, pulled_at, now),
                    ("Warning", "Failed", "Error: ErrImagePull", pulled_at, now),
                    ("Normal", "BackOff", backoff, pulled_at, now),
                    ("Warning", "Failed", "Error: ImagePullBackOff", pulled_at, now),
                ]
        elif snapshot.running_at is not None:
            ready = snapshot.running_at
            rows += [
                ("Normal", "Pulled", f'Successfully pulled image "{self.image}"', ready, ready),
                ("Normal", "Created", f"Created container {self.session_type}", ready, ready),
                ("Normal", "Started", f"Started container {self.session_type}", ready, ready),
            ]
        if snapshot.stage is Stage.TERMINATING and self.deleted_at is not None:
            gone = self.deleted_at
            if self.preempted:
                preempted = "Preempted by a pod of higher priority on node-1"
                rows.append(("Warning", "Preempted", preempted, gone, gone))
            rows.append(
                ("Normal", "Killing", f"Stopping container {self.session_type}", gone, gone)
            )
        rows = [row for row in rows if now - row[4] < events_ttl]
        if not rows:
            return "<none>\n"
        return _table(rows)


def _table(rows: list[tuple[str, str, str, datetime, datetime]]) -> str:
    """The ``kubectl`` custom-columns layout: left-aligned columns three spaces apart."""
    cells = [("TYPE", "REASON", "MESSAGE", "FIRST-TIME", "LAST-TIME")]
    cells += [(kind, why, what, iso_seconds(a), iso_seconds(b)) for kind, why, what, a, b in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(5)]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"
