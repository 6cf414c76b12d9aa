r"""A simulated platform: configurable timings and faults, and a ledger of every action.

It stands for an external system, so its state must outlive the broker: every action is
appended to a ledger file (JSON lines) and replayed at start-up. A broker killed with
SIGKILL finds, on restart, exactly the objects it had created — and the ledger lets tests
prove that nothing was prepared or released twice.

Timings (seconds) come from settings (``EXECBROKER_MOCK_PREPARE_SECONDS`` etc.) and can be
overridden per request through the executable's ``environment``:

- ``MOCK_PREPARE_SECONDS``, ``MOCK_RELEASE_SECONDS``: for every component of the session;
- ``MOCK_RUN_SECONDS``: how long the executable runs before it exits (a notebook, or a
  container without it and without a broker-wide default, runs until its time is up);
- ``MOCK_EXIT_CODE``: the executable's exit code (default 0);
- ``MOCK_OUTPUT``: what the executable prints, as bytes written with Python's backslash
  escapes (``before\x00after\xff\n``: a NUL and a byte that is not UTF-8, which a
  request's JSON cannot carry as they are); its last lines are kept when it exits, as the
  docker platform keeps a container's;
- ``MOCK_FAIL_AT``: ``<role>:<phase>`` injects a failure, where role is one of
  executable, compute, storage, data and phase one of PREPARING, RUNNING (compute only),
  RELEASING — e.g. ``data:PREPARING``; or ``<role>:TERMINATED``: the platform ends the
  component itself, as a preempted job or an administrator would — once it is ready (the
  compute: once it has run for ``MOCK_RUN_SECONDS``) it is reported releasing for
  ``MOCK_RELEASE_SECONDS``, then released, with no exit code;
- ``MOCK_STALL``: ``<role>:<seconds>`` makes the call that creates that component take so
  many seconds of real time before it answers (a slow platform API, e.g. a Skaha create
  stuck behind Kubernetes) — e.g. ``compute:45``. A call given up meanwhile creates nothing.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from uuid import UUID

from execbroker.clock import Clock
from execbroker.config import MockSettings
from execbroker.model import kinds
from execbroker.model.plan import Plan
from execbroker.model.printable import printable_output
from execbroker.model.records import ComponentRole
from execbroker.platforms.base import (
    Platform,
    PlatformLimits,
    PlatformNote,
    PlatformState,
    PlatformStatus,
    Work,
)

__all__ = ["MockPlatform", "read_ledger"]

logger = logging.getLogger(__name__)


@dataclass
class _Object:
    component: str
    session: str
    role: str
    created: datetime
    prepare: float
    run: float | None
    release: float
    exit_code: int
    fail_at: str | None
    output: str | None = None  # MOCK_OUTPUT as given (escapes not yet decoded)
    release_requested: datetime | None = None


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Every action the mock platform took, oldest first."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


class MockPlatform(Platform):
    """A platform that simulates its objects on the broker's clock and runs nothing.

    Every prepare and release is appended to a ledger file that outlives the broker, so tests
    can check that nothing was prepared or released twice across restarts. A request's
    executable environment can set how it behaves (``MOCK_RUN_SECONDS``, ``MOCK_EXIT_CODE``…).
    """

    name = "mock"

    def __init__(self, *, ledger: Path, clock: Clock, timings: MockSettings) -> None:
        self._ledger_path = ledger
        self._clock = clock
        self._timings = timings
        self._objects: dict[str, _Object] = {}
        self._ledger: BinaryIO | None = None
        self._offset = 0  # how much of the ledger file has been replayed

    def limits(self) -> PlatformLimits:
        """The account limit on notebooks the settings give (none by default)."""
        return PlatformLimits(
            name="the mock platform",
            interactive_sessions=self._timings.max_interactive_sessions,
            per_owner=self._timings.accounts_per_owner,
        )

    def interactive(self, plan: Plan) -> bool:
        """Notebooks count toward the account limit, containers do not."""
        return plan.executable.kind == kinds.EXECUTABLE_JUPYTER

    async def start(self) -> None:
        self._ledger_path.parent.mkdir(parents=True, exist_ok=True)
        self._ledger = self._ledger_path.open("ab")  # UTF-8 lines (json.dumps: ASCII)
        self._catch_up()

    def _catch_up(self) -> None:
        """Replay what was appended to the ledger since last time — by this broker or by
        another broker process sharing it (several brokers on one database share one
        platform), so that a session taken over from a dead broker finds its objects.
        """
        try:
            size = os.stat(self._ledger_path).st_size
        except FileNotFoundError:
            return
        if size <= self._offset:
            return
        with self._ledger_path.open("rb") as stream:
            stream.seek(self._offset)
            chunk = stream.read(size - self._offset)
        complete = chunk.rfind(b"\n") + 1  # a line being written is read next time
        for line in chunk[:complete].splitlines():
            if line.strip():
                self._replay(json.loads(line))
        self._offset += complete

    async def stop(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def _replay(self, entry: dict[str, Any]) -> None:
        when = datetime.fromisoformat(entry["time"])
        if entry["action"] == "prepare":
            if entry["component"] in self._objects:
                return  # already replayed (a line this broker wrote and applied)
            self._objects[entry["component"]] = _Object(
                component=entry["component"],
                session=entry["session"],
                role=entry["role"],
                created=when,
                prepare=entry["prepare"],
                run=entry["run"],
                release=entry["release"],
                exit_code=entry["exit_code"],
                fail_at=entry["fail_at"],
                output=entry.get("output"),
            )
        elif entry["action"] == "release" and entry["component"] in self._objects:
            found = self._objects[entry["component"]]
            found.release_requested = found.release_requested or when

    def _record(self, entry: dict[str, Any]) -> None:
        if self._ledger is None:
            raise RuntimeError("the mock platform is not started")
        line = (json.dumps(entry) + "\n").encode()
        # One line per action, flushed: a SIGKILL of the broker loses none of them.
        self._ledger.write(line)
        self._ledger.flush()
        # Appended where the file ended: if that was where this process had read to, no
        # other broker wrote meanwhile, and its own line need not be read back (the caller
        # applies it). Otherwise the next catch-up reads from where it was (replaying is
        # idempotent, this line included).
        end = self._ledger.tell()
        if end == self._offset + len(line):
            self._offset = end

    # ------------------------------------------------------------------ settings

    def _parameters(self, work: Work) -> dict[str, Any]:
        environment: dict[str, str] = {}
        executable = work.session.component(ComponentRole.EXECUTABLE)
        if executable is not None:
            environment = executable.spec.get("environment") or {}
        role = work.role.value
        run = None if self._timings.run is None else self._timings.run.total_seconds()
        if executable is not None and executable.kind == kinds.EXECUTABLE_JUPYTER:
            run = None  # a notebook server runs until its time is up
        return {
            "prepare": _number(
                environment,
                "MOCK_PREPARE_SECONDS",
                self._timings.prepare.get(role, timedelta()).total_seconds(),
            ),
            "release": _number(
                environment,
                "MOCK_RELEASE_SECONDS",
                self._timings.release.get(role, timedelta()).total_seconds(),
            ),
            "run": _number(environment, "MOCK_RUN_SECONDS", run)
            if run is not None or "MOCK_RUN_SECONDS" in environment
            else None,
            "exit_code": int(_number(environment, "MOCK_EXIT_CODE", 0) or 0),
            "fail_at": (environment.get("MOCK_FAIL_AT") or "").strip() or None,
            "output": environment.get("MOCK_OUTPUT") if role == "compute" else None,
        }

    # ------------------------------------------------------------------ the interface

    async def prepare(self, work: Work) -> PlatformStatus:
        self._catch_up()
        key = str(work.uuid)
        found = self._objects.get(key)
        if found is None:
            await asyncio.sleep(_stall(work))
            self._catch_up()
            found = self._objects.get(key)
        if found is None:
            now = self._clock.now()
            entry = {
                "action": "prepare",
                "time": now.isoformat(),
                "component": key,
                "session": str(work.session.uuid),
                "role": work.role.value,
                **self._parameters(work),
            }
            self._record(entry)
            self._replay(entry)
            found = self._objects[key]
        return self._status(found, work)

    async def poll(self, work: Work) -> PlatformStatus:
        self._catch_up()
        found = self._objects.get(str(work.uuid))
        if found is None:
            return PlatformStatus(PlatformState.MISSING, "the platform has no such object")
        return self._status(found, work)

    async def release(self, work: Work) -> PlatformStatus:
        self._catch_up()
        found = self._objects.get(str(work.uuid))
        if found is None:
            return PlatformStatus(PlatformState.RELEASED, "nothing to release")
        self._request_release(found, orphan=False)
        return self._status(found, work)

    async def release_orphan(self, uuid: UUID) -> None:
        self._catch_up()
        found = self._objects.get(str(uuid))
        if found is not None:
            self._request_release(found, orphan=True)

    def _request_release(self, found: _Object, *, orphan: bool) -> None:
        """Ledger the release once; asking again is a no-op."""
        if found.release_requested is not None:
            return
        entry: dict[str, Any] = {
            "action": "release",
            "time": self._clock.now().isoformat(),
            "component": found.component,
            "session": found.session,
            "role": found.role,
        }
        if orphan:
            entry["orphan"] = True
        self._record(entry)
        self._replay(entry)

    async def objects(self) -> set[UUID]:
        self._catch_up()
        now = self._clock.now()
        return {
            UUID(key)
            for key, found in self._objects.items()
            if found.release_requested is None
            or now < found.release_requested + timedelta(seconds=found.release)
        }

    @staticmethod
    def _exit_before(found: _Object, moment: datetime) -> int | None:
        """The exit code, if the run had ended by ``moment``."""
        ended = _ended_at(found)
        if ended is None or ended > moment or found.fail_at in _NO_EXIT:
            return None
        return found.exit_code

    def _status(self, found: _Object, work: Work) -> PlatformStatus:
        now = self._clock.now()
        fail = found.fail_at
        if found.release_requested is not None:
            if fail == f"{found.role}:RELEASING":
                return PlatformStatus(PlatformState.FAILED, f"injected failure: {fail}")
            done = found.release_requested + timedelta(seconds=found.release)
            # Like a container runtime, the mock remembers how a finished run exited.
            exit_code = self._exit_before(found, found.release_requested)
            if now >= done:
                return PlatformStatus(PlatformState.RELEASED, exit_code=exit_code)
            return PlatformStatus(
                PlatformState.RELEASING, next_check=done - now, exit_code=exit_code
            )
        if fail == f"{found.role}:PREPARING":
            return PlatformStatus(PlatformState.FAILED, f"injected failure: {fail}")
        ready = found.created + timedelta(seconds=found.prepare)
        if fail == f"{found.role}:TERMINATED":
            terminated = self._terminated(found, ready, now)
            if terminated is not None:
                return terminated
        if now < ready:
            return PlatformStatus(PlatformState.PREPARING, next_check=ready - now)
        if found.role != ComponentRole.COMPUTE.value:
            return PlatformStatus(PlatformState.READY)
        connectors = _connectors(work)
        if fail == "compute:RUNNING":
            return PlatformStatus(
                PlatformState.FAILED, f"injected failure: {fail}", connectors=connectors
            )
        if found.run is None:
            return PlatformStatus(PlatformState.RUNNING, connectors=connectors)
        exits = ready + timedelta(seconds=found.run)
        if now < exits:
            return PlatformStatus(
                PlatformState.RUNNING, next_check=exits - now, connectors=connectors
            )
        return PlatformStatus(
            PlatformState.EXITED,
            f"the executable exited with code {found.exit_code}",
            exit_code=found.exit_code,
            connectors=connectors,
            notes=_output_notes(found),
        )

    @staticmethod
    def _terminated(found: _Object, ready: datetime, now: datetime) -> PlatformStatus | None:
        """``<role>:TERMINATED``: ended by the platform once ready (the compute: once it has
        run), as a preemption would; None before then.
        """
        ran = found.run if found.role == ComponentRole.COMPUTE.value else None
        ends = ready + timedelta(seconds=ran or 0)
        if now < ends:
            return None
        gone = ends + timedelta(seconds=found.release)
        reason = "terminated by the platform (injected: preempted)"
        if now >= gone:
            return PlatformStatus(PlatformState.RELEASED, reason)
        return PlatformStatus(PlatformState.RELEASING, reason, next_check=gone - now)


_NO_EXIT = frozenset({"compute:RUNNING", "compute:TERMINATED"})


def _ended_at(found: _Object) -> datetime | None:
    if found.role != ComponentRole.COMPUTE.value or found.run is None:
        return None
    return found.created + timedelta(seconds=found.prepare + found.run)


_OUTPUT_LINES = 20  # as many as the docker platform keeps by default


def _output_notes(found: _Object) -> tuple[PlatformNote, ...]:
    """The last lines the executable printed, as the docker platform reports them: bytes
    from a program, escaped where they are not printable UTF-8 (never dropped).
    """
    if not found.output:
        return ()
    try:
        written = codecs.escape_decode(found.output.encode("utf-8"))[0]
    except ValueError:
        written = found.output.encode("utf-8")  # a stray backslash: taken as written
    lines = printable_output(written).splitlines()[-_OUTPUT_LINES:]
    return (
        PlatformNote(
            "The last {count} lines of its output:\n{output}",
            {"count": str(len(lines)), "output": "\n".join(lines)},
        ),
    )


def _number(environment: dict[str, str], name: str, default: float | None) -> float | None:
    text = environment.get(name)
    if text is None:
        return default
    try:
        return max(0.0, float(text))
    except ValueError:
        return default


def _connectors(work: Work) -> list[dict[str, Any]]:
    executable = work.session.component(ComponentRole.EXECUTABLE)
    if executable is None or executable.kind != kinds.EXECUTABLE_JUPYTER:
        return []
    return [
        {
            "kind": "urn:execbroker:connector:jupyter-notebook",
            "protocol": "HTTPS",
            "location": f"https://mock.platform.invalid/notebook/{work.session.uuid}/lab",
        }
    ]


def _stall(work: Work) -> float:
    """Seconds ``MOCK_STALL`` holds up the call creating this component (0: none)."""
    executable = work.session.component(ComponentRole.EXECUTABLE)
    environment = (executable.spec.get("environment") or {}) if executable else {}
    role, _, seconds = (environment.get("MOCK_STALL") or "").partition(":")
    if role.strip() != work.role.value:
        return 0.0
    try:
        return max(0.0, float(seconds))
    except ValueError:
        return 0.0
