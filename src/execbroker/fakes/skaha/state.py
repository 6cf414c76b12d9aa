"""``FakeSkaha``: every session, the rules Skaha applies to requests, and the fault knobs.

The HTTP layer is thin: it authenticates, then calls one method here per request. All state
sits behind one lock, because the server answers from its own thread while a test pokes the
knobs from the main thread.
"""

from __future__ import annotations

import random
import re
import secrets
import string
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from execbroker.fakes.skaha.auth import TokenAuthority
from execbroker.fakes.skaha.config import (
    INTERACTIVE_TYPES,
    SESSION_TYPES,
    Endpoint,
    FakeImage,
    Fault,
    FaultKind,
    SkahaCatalogue,
    SkahaQuirks,
    SkahaTimings,
)
from execbroker.fakes.skaha.errors import (
    AccessControlError,
    IllegalArgumentError,
    ResourceNotFoundError,
    UnexpectedError,
    UnsupportedOperationError,
)
from execbroker.fakes.skaha.launch import (
    SKAHA_TEMPLATE_ENV,
    Launched,
    LaunchError,
    launch_headless,
)
from execbroker.fakes.skaha.sessions import FakeSession, Snapshot, Stage

__all__ = ["NOT_AUTHORIZED", "REGISTRY_AUTH_REQUIRED", "FakeSkaha", "RecordedRequest"]

NOT_AUTHORIZED = "Not authorized to use the skaha system"
REGISTRY_AUTH_REQUIRED = (
    "No authentication provided for unknown or private image. "
    "Use x-skaha-registry-auth request header with base64Encode(username:secret)."
)
_NAME = re.compile(r"[A-Za-z0-9-]+")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_MAX_NAME = 63


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake answered, for assertions on polling behaviour."""

    at: datetime
    endpoint: Endpoint
    user: str | None
    method: str
    path: str


@dataclass
class _ArmedFault:
    fault: Fault
    left: int | None


def _system_clock() -> datetime:
    return datetime.now(UTC)


class FakeSkaha:
    """A Skaha service in memory, its clock injected.

    ``allowed_users`` is the platform group (None: every authenticated user);
    ``sessions_base`` is the scheme and host of ``connectURL`` (None: the request's own);
    ``issuer_url``, when set, is advertised in an ``ivoa_bearer`` challenge on 401.
    """

    def __init__(
        self,
        authority: TokenAuthority,
        *,
        clock: Callable[[], datetime] = _system_clock,
        timings: SkahaTimings | None = None,
        catalogue: SkahaCatalogue | None = None,
        quirks: SkahaQuirks | None = None,
        allowed_users: Iterable[str] | None = None,
        sessions_base: str | None = None,
        issuer_url: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.authority = authority
        self.issuer_url = issuer_url
        self.clock = clock
        self.timings = timings or SkahaTimings()
        self.catalogue = catalogue or SkahaCatalogue()
        self.sessions_base = sessions_base
        self._lock = threading.RLock()
        self._quirks = quirks or SkahaQuirks()
        self._allowed = None if allowed_users is None else frozenset(allowed_users)
        self._images = {image.id: image for image in self.catalogue.images}
        self._sessions: dict[str, FakeSession] = {}
        self._uids: dict[str, int] = {}
        self._faults: list[_ArmedFault] = []
        self._random = random.Random(seed)  # noqa: S311 - fault dice, not security
        self._requests: list[RecordedRequest] = []
        self._held_types: frozenset[str] | None = None
        self._queue_held = False
        self._broken_images: set[str] = set()
        self._launched: list[tuple[str, str]] = []

    # ---- knobs -------------------------------------------------------------------------

    @property
    def quirks(self) -> SkahaQuirks:
        return self._quirks

    def set_quirks(self, **changes: bool) -> SkahaQuirks:
        """Switch quirks on or off by name, e.g. ``set_quirks(metrics_missing=True)``."""
        with self._lock:
            self._quirks = replace(self._quirks, **changes)
            return self._quirks

    def allow_users(self, users: Iterable[str] | None) -> None:
        """Set the platform group; None lets every authenticated user in."""
        with self._lock:
            self._allowed = None if users is None else frozenset(users)

    def inject(self, fault: Fault) -> None:
        """Add a fault; it fires on matching requests until its ``times`` run out."""
        with self._lock:
            self._faults.append(_ArmedFault(fault, fault.times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_faults(self, endpoint: Endpoint, user: str | None) -> list[Fault]:
        """The faults that fire for this request, each using up one of its ``times``.

        Every matching delay fires, and at most one other fault: the earliest injected.
        """
        fired: list[Fault] = []
        with self._lock:
            for armed in list(self._faults):
                fault = armed.fault
                if fault.endpoint not in {None, endpoint} or fault.user not in {None, user}:
                    continue
                decisive = fault.kind is not FaultKind.DELAY
                if decisive and any(f.kind is not FaultKind.DELAY for f in fired):
                    continue
                if self._random.random() >= fault.probability:
                    continue
                fired.append(fault)
                if armed.left is not None:
                    armed.left -= 1
                    if armed.left <= 0:
                        self._faults.remove(armed)
        return fired

    def hold_queue(self, session_types: Iterable[str] | None = None) -> None:
        """Kueue starvation: sessions (of these types) stay Pending without ``startTime``."""
        with self._lock:
            now = self.clock()
            self._queue_held = True
            self._held_types = None if session_types is None else frozenset(session_types)
            for session in self._sessions.values():
                if self._held(session.session_type) and (
                    session.admitted_at is not None and session.admitted_at > now
                ):
                    session.admitted_at = None

    def release_queue(self) -> None:
        """End the starvation: held sessions are admitted now."""
        with self._lock:
            now = self.clock()
            self._queue_held = False
            self._held_types = None
            for session in self._sessions.values():
                if session.admitted_at is None:
                    session.admitted_at = now

    def break_image(self, image: str) -> None:
        """New sessions of ``image`` start but never pull: Pending, ErrImagePull events."""
        with self._lock:
            self._broken_images.add(image)

    def fix_image(self, image: str) -> None:
        with self._lock:
            self._broken_images.discard(image)

    def add_image(self, image: str, types: Sequence[str] = ("headless",)) -> None:
        """Put an image into the public cache, so it needs no registry auth."""
        with self._lock:
            self._images[image] = FakeImage(image, tuple(types))

    def remove_image(self, image: str) -> None:
        """Drop an image from the cache, e.g. one pushed after the last refresh."""
        with self._lock:
            self._images.pop(image, None)

    def crash(self, session_id: str, *, exit_code: int = 137) -> None:
        """The container dies now: the session turns Failed."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise KeyError(session_id)
            session.crashed_at = self.clock()
            session.crash_exit_code = exit_code

    def preempt(self, session_id: str) -> None:
        """Kubernetes ends the session now, not the broker: as the headless PriorityClass's
        preemption, an eviction, a node drain or an administrator would. It shows
        ``Terminating`` for ``timings.terminating`` (its events say ``Preempted``), then
        it is gone (404).
        """
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise KeyError(session_id)
            session.deleted_at = self.clock()
            session.preempted = True

    def forget(self, session_id: str) -> None:
        """Garbage-collect one session now, whatever its state (404 from now on)."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is not None:
                session.forgotten = True

    def garbage_collect(self) -> list[str]:
        """Collect every finished session now, as if its TTL had passed; their ids."""
        with self._lock:
            now = self.clock()
            done = [
                sid
                for sid, session in self._sessions.items()
                if session.at(now, self.timings).stage in {Stage.COMPLETED, Stage.FAILED}
            ]
            for sid in done:
                self.forget(sid)
            return done

    # ---- introspection -----------------------------------------------------------------

    def record(self, endpoint: Endpoint, user: str | None, method: str, path: str) -> None:
        with self._lock:
            self._requests.append(RecordedRequest(self.clock(), endpoint, user, method, path))

    def request_log(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def request_count(self, endpoint: Endpoint | None = None, user: str | None = None) -> int:
        """How many requests matched (None matches any endpoint or user)."""
        with self._lock:
            return sum(
                1
                for request in self._requests
                if endpoint in {None, request.endpoint} and user in {None, request.user}
            )

    def request_counts(self) -> Counter[tuple[Endpoint, str | None]]:
        with self._lock:
            return Counter((request.endpoint, request.user) for request in self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def session_status(self, session_id: str) -> str | None:
        """The session's status now, or None once it has gone (any owner)."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            stage = session.at(self.clock(), self.timings).stage
            return None if stage is Stage.GONE else stage.status

    def launched(self) -> list[tuple[str, str]]:
        """Every session ever launched, as (id, name), oldest first: gone ones too, so
        that tests can count duplicates after clean-up.
        """
        with self._lock:
            return list(self._launched)

    def session_ids(self, user: str | None = None) -> list[str]:
        with self._lock:
            return [session.id for session in self._visible(user)]

    # ---- authorization -----------------------------------------------------------------

    def authorize(self, user: str) -> None:
        """403 unless ``user`` is in the platform group."""
        with self._lock:
            if self._allowed is not None and user not in self._allowed:
                raise AccessControlError(NOT_AUTHORIZED)

    # ---- the service -------------------------------------------------------------------

    def create_session(
        self,
        user: str,
        *,
        name: str | None,
        image: str | None,
        session_type: str | None = None,
        cores: str | None = None,
        ram: str | None = None,
        gpus: str | None = None,
        cmd: str | None = None,
        args: str | None = None,
        env: Sequence[str] = (),
        registry_auth: str | None = None,
    ) -> str:
        """Validate like Skaha's ``PostAction`` (same order, same texts) and launch."""
        with self._lock:
            catalogue = self.catalogue
            if image is None:
                raise IllegalArgumentError("Missing parameter 'image'")
            if image.split("/", 1)[0] not in catalogue.registry_hosts:
                hosts = ", ".join(catalogue.registry_hosts)
                raise IllegalArgumentError(
                    f"session image '{image}' must come from one of [{hosts}]"
                )
            kind = "headless" if session_type is None else session_type.lower()
            if kind not in SESSION_TYPES:
                raise IllegalArgumentError(f"Invalid session type: {session_type}")
            core_count = _option("cores", cores, catalogue.core_options, fractional=True)
            ram_gb = _option("ram", ram, catalogue.memory_options, fractional=True)
            if name is None:
                raise IllegalArgumentError("Missing parameter 'name'")
            if not _NAME.fullmatch(name):
                raise IllegalArgumentError("name can only contain alpha-numeric chars and '-'")
            if kind in INTERACTIVE_TYPES:
                self._check_interactive_limit(user)
            gpu_count = _option("gpus", gpus, catalogue.gpu_options, fractional=False)
            if image not in self._images and not registry_auth:
                raise IllegalArgumentError(REGISTRY_AUTH_REQUIRED)
            headless = kind == "headless"
            launched = _headless(image, cmd, args, env) if headless else None
            return self._launch(
                user,
                name=name,
                kind=kind,
                image=image,
                cores=core_count,
                ram=ram_gb,
                gpus=gpu_count,
                cmd=launched.command[0] if launched and launched.command else None,
                args=list(launched.args or []) if launched else [],
                env=_requested(launched.env) if launched else {},
            )

    def list_sessions(
        self,
        user: str,
        *,
        session_type: str | None = None,
        status: str | None = None,
        view: str | None = None,
        base: str,
    ) -> list[dict[str, Any]]:
        """``GET /session``: the caller's sessions (everyone's, reduced, for ``view=all``)."""
        with self._lock:
            now = self.clock()
            quirks = self._quirks
            documents: list[dict[str, Any]] = []
            owner = None if view == "all" else user
            for session in self._visible(owner):
                snapshot = session.at(now, self.timings)
                if session_type is not None and session.session_type != session_type.lower():
                    continue
                if status is not None and snapshot.stage.status.lower() != status.lower():
                    continue
                if view == "interactive" and not session.interactive:
                    continue
                if view == "all":
                    documents.append(
                        session.public_json(
                            snapshot, start_without_seconds=quirks.start_time_without_seconds
                        )
                    )
                else:
                    documents.append(self._render(session, snapshot, base))
            return documents

    def session_stats(self) -> dict[str, Any]:
        """``view=stats``: cluster totals (the HTTP layer answers 503 when metrics are off).

        As Skaha's portal reads them: ``cores.requestedCPUCores`` of ``cpuCoresAvailable``
        and ``ram.requestedRAM`` of ``ramAvailable`` ("<n>G"); what every user's started
        sessions (pulling or running) requested counts.
        """
        with self._lock:
            now = self.clock()
            started = [
                s
                for s in self._visible(None)
                if s.at(now, self.timings).stage in {Stage.PULLING, Stage.RUNNING}
            ]
            running = [s for s in started if s.at(now, self.timings).stage is Stage.RUNNING]
            headless = sum(1 for s in running if not s.interactive)
            catalogue = self.catalogue
            return {
                "instances": {
                    "session": len(running) - headless,
                    "desktopApp": 0,
                    "headless": headless,
                    "total": len(running),
                },
                "cores": {
                    "requestedCPUCores": sum(s.cores or 1 for s in started),
                    "cpuCoresAvailable": catalogue.cluster_cores,
                    "maxCores": {"cores": max(catalogue.core_options, default=0)},
                },
                "ram": {
                    "requestedRAM": f"{sum(s.ram or 1 for s in started)}G",
                    "ramAvailable": f"{catalogue.cluster_memory_gib}G",
                    "maxRAM": {"ram": f"{max(catalogue.memory_options, default=0)}G"},
                },
            }

    def get_session(self, user: str, session_id: str, *, base: str) -> dict[str, Any]:
        """``GET /session/{id}``; other users' and vanished ids are 404."""
        with self._lock:
            session, snapshot = self._owned(user, session_id)
            return self._render(session, snapshot, base)

    def session_logs(self, user: str, session_id: str) -> str:
        """``view=logs``: empty (200) for unknown ids too, as ``kubectl logs -l`` prints nothing."""
        with self._lock:
            try:
                session, snapshot = self._owned(user, session_id)
            except ResourceNotFoundError:
                return ""
            return session.logs(snapshot)

    def session_events(self, user: str, session_id: str) -> str:
        """``view=events``: 404 ``session <id> not found.`` while there is no pod."""
        with self._lock:
            missing = ResourceNotFoundError(f"session {session_id} not found.")
            try:
                session, snapshot = self._owned(user, session_id)
            except ResourceNotFoundError:
                raise missing from None
            table = session.events(snapshot, self.clock(), self.timings.events_ttl)
            if table is None:
                raise missing
            return table

    def modify_session(self, user: str, session_id: str, action: str | None) -> None:
        """``POST /session/{id}``: only ``action=renew`` is understood (§1.9)."""
        if not action:
            raise UnsupportedOperationError("Cannot modify an existing session")
        if action.lower() != "renew":
            raise UnsupportedOperationError("unrecognized action")
        self.renew_session(user, session_id)

    def renew_session(self, user: str, session_id: str) -> None:
        """Push the deadline to ``session_expiry`` from now when less than that remains."""
        with self._lock:
            now = self.clock()
            session = self._sessions.get(session_id)
            snapshot = session.at(now, self.timings) if session else None
            if (
                session is None
                or session.user != user
                or snapshot is None
                or snapshot.stage not in {Stage.PULLING, Stage.RUNNING}
                or snapshot.start_time is None
            ):
                raise IllegalArgumentError(
                    f"No active job for user {user} with session {session_id}"
                )
            used = now - snapshot.start_time
            expiry = self.timings.session_expiry
            if expiry > session.active_deadline - used:
                session.active_deadline = used + expiry

    def delete_session(self, user: str, session_id: str) -> None:
        """Delete the Job; unknown ids are fine (200) unless ``legacy_delete_404``."""
        with self._lock:
            now = self.clock()
            session = self._sessions.get(session_id)
            alive = session is not None and session.at(now, self.timings).stage not in {
                Stage.GONE,
                Stage.TERMINATING,
            }
            if self._quirks.legacy_delete_404:
                if session is None or not alive:
                    raise ResourceNotFoundError(session_id)
                if session.user != user:
                    raise AccessControlError("forbidden")
            if session is not None and alive and session.user == user:
                session.deleted_at = now

    def images(self, session_type: str | None) -> list[dict[str, Any]]:
        """``GET /image[?type=]``."""
        with self._lock:
            if session_type is not None and session_type not in SESSION_TYPES:
                raise IllegalArgumentError(f"unknown type: {session_type}")
            return [
                {"id": image.id, "types": list(image.types), "digest": image.digest}
                for image in self._images.values()
                if session_type is None or session_type in image.types
            ]

    def context(self) -> dict[str, Any]:
        """``GET /context``: resource options and defaults."""
        c = self.catalogue
        limit: int | str = c.max_interactive_sessions
        if self.quirks.max_interactive_sessions_as_string:
            limit = str(limit)
        return {
            "cores": {
                "default": c.core_default,
                "defaultRequest": c.core_request,
                "defaultLimit": c.core_limit,
                "options": list(c.core_options),
            },
            "memoryGB": {
                "default": c.memory_default,
                "defaultRequest": c.memory_request,
                "defaultLimit": c.memory_limit,
                "options": list(c.memory_options),
            },
            "gpus": {"options": list(c.gpu_options)},
            "maxInteractiveSessions": limit,
        }

    def connectable(self, session_id: str) -> bool:
        """Whether the UI behind the session's ``connectURL`` answers (it is Running)."""
        return self.connect_status(session_id) == 200

    def connect_status(self, session_id: str) -> int:
        """What the session's ``connectURL`` answers: 200 once Running (and past
        ``timings.connect_warmup``), 503 while it warms up, else 404.
        """
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or not session.interactive:
                return 404
            snapshot = session.at(self.clock(), self.timings)
            if snapshot.stage is not Stage.RUNNING or snapshot.running_at is None:
                return 404
            warm = snapshot.running_at + self.timings.connect_warmup
            return 200 if self.clock() >= warm else 503

    # ---- internals -----------------------------------------------------------------------

    def _held(self, session_type: str) -> bool:
        return self._queue_held and (self._held_types is None or session_type in self._held_types)

    def _visible(self, user: str | None) -> list[FakeSession]:
        """Sessions still present (pruning the gone ones), oldest first."""
        now = self.clock()
        for sid in [
            sid for sid, s in self._sessions.items() if s.at(now, self.timings).stage is Stage.GONE
        ]:
            del self._sessions[sid]
        return [s for s in self._sessions.values() if user is None or s.user == user]

    def _owned(self, user: str, session_id: str) -> tuple[FakeSession, Snapshot]:
        session = self._sessions.get(session_id)
        if session is not None and session.user == user:
            snapshot = session.at(self.clock(), self.timings)
            if snapshot.stage is not Stage.GONE:
                return session, snapshot
        raise ResourceNotFoundError(f"session {session_id} not found")

    def _render(self, session: FakeSession, snapshot: Snapshot, base: str) -> dict[str, Any]:
        return session.to_json(
            snapshot,
            base=self.sessions_base or base,
            home_base_path=self.catalogue.home_base_path,
            metrics_missing=self._quirks.metrics_missing,
            start_without_seconds=self._quirks.start_time_without_seconds,
        )

    def _check_interactive_limit(self, user: str) -> None:
        now = self.clock()
        limit = self.catalogue.max_interactive_sessions
        active = sum(
            1
            for s in self._visible(user)
            if s.interactive
            and s.at(now, self.timings).stage in {Stage.QUEUED, Stage.PULLING, Stage.RUNNING}
        )
        if active >= limit:
            raise IllegalArgumentError(
                f"User {user} has reached the maximum of {limit} active sessions."
            )

    def _launch(
        self,
        user: str,
        *,
        name: str,
        kind: str,
        image: str,
        cores: int | None,
        ram: int | None,
        gpus: int | None,
        cmd: str | None,
        args: list[str],
        env: dict[str, str],
    ) -> str:
        now = self.clock()
        session_id = self._new_id()
        self._launched.append((session_id, name.lower()[:_MAX_NAME]))
        run, exit_code = _run_control(kind, cmd, args, env, self.timings.run)
        interactive = kind in INTERACTIVE_TYPES
        deadline = self.timings.session_expiry if interactive else self.timings.headless_deadline
        self._sessions[session_id] = FakeSession(
            id=session_id,
            user=user,
            uid=self._uids.setdefault(user, 10000 + len(self._uids)),
            name=name.lower()[:_MAX_NAME],
            session_type=kind,
            image=image,
            created_at=now,
            admitted_at=None if self._held(kind) else now + self.timings.queue,
            pull=self.timings.pull,
            pull_fails=image in self._broken_images or env.get("FAKE_IMAGE_PULL") == "fail",
            run=run,
            exit_code=exit_code,
            active_deadline=deadline,
            cores=cores,
            ram=ram,
            gpus=gpus,
            cmd=cmd,
            args=args,
            env=env,
        )
        return session_id

    def _new_id(self) -> str:
        while True:
            candidate = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
            if candidate not in self._sessions:
                return candidate


def _option(name: str, raw: str | None, options: Sequence[int], *, fractional: bool) -> int | None:
    """A resource parameter's value, checked against the ``/context`` options."""
    if raw is None:
        return None
    try:
        value = int(float(raw)) if fractional else int(raw)
    except ValueError:
        value = None
    if value is None or value not in options:
        raise IllegalArgumentError(f"Invalid value for '{name}': {raw}")
    return value


def _headless(image: str, cmd: str | None, args: str | None, env: Sequence[str]) -> Launched:
    """What the container runs, from the Job YAML Skaha pastes together (:mod:`.launch`);
    a Job that cannot be built or read is Skaha's 500.
    """
    try:
        return launch_headless(image, cmd, args, env)
    except LaunchError as failure:
        raise UnexpectedError(f"java.lang.IllegalStateException: {failure}") from failure


def _requested(env: dict[str, str]) -> dict[str, str]:
    """The container's environment less what Skaha's template sets in every session."""
    return {key: value for key, value in env.items() if key not in SKAHA_TEMPLATE_ENV}


def _run_control(
    kind: str, cmd: str | None, args: list[str], env: dict[str, str], default: timedelta
) -> tuple[timedelta | None, int]:
    """How long a headless container runs and its exit code.

    ``FAKE_RUN_SECONDS``/``FAKE_EXIT_CODE`` in ``env`` win; else ``cmd=sleep args=N`` runs
    N seconds; else ``default``. Interactive sessions run until deleted or expired.
    """
    if kind in INTERACTIVE_TYPES:
        return None, 0
    run = default
    if cmd == "sleep" and len(args) == 1:
        run = _seconds(args[0], default)
    if "FAKE_RUN_SECONDS" in env:
        run = _seconds(env["FAKE_RUN_SECONDS"], run)
    try:
        exit_code = int(env.get("FAKE_EXIT_CODE", "0"))
    except ValueError:
        exit_code = 1
    return run, exit_code


def _seconds(text: str, fallback: timedelta) -> timedelta:
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        return fallback
