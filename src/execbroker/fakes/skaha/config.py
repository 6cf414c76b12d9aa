"""The fake's settings: timings, the platform catalogue, quirk switches and fault knobs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

__all__ = [
    "DEFAULT_IMAGES",
    "INTERACTIVE_TYPES",
    "SESSION_TYPES",
    "Endpoint",
    "FakeImage",
    "Fault",
    "FaultKind",
    "SkahaCatalogue",
    "SkahaQuirks",
    "SkahaTimings",
]

SESSION_TYPES = ("notebook", "desktop", "carta", "contributed", "firefly", "headless")
"""Types accepted by ``POST /session`` (``desktop-app`` only exists under ``/app``)."""

INTERACTIVE_TYPES = frozenset(SESSION_TYPES) - {"headless"}


@dataclass(frozen=True)
class SkahaTimings:
    """How long each stage of a session takes; the defaults are compressed for tests.

    ``queue``: created → admitted (Pending without ``startTime``); ``pull``: admitted →
    Running (Pending with ``startTime``); ``run``: headless run length when the request does
    not set one; ``terminating``: the ``Terminating`` window after DELETE (zero: straight to
    404); ``ttl_headless``/``ttl_interactive``: finished → garbage-collected;
    ``session_expiry``: interactive ``activeDeadlineSeconds`` and the renew window;
    ``headless_deadline``: headless ``activeDeadlineSeconds``; ``events_ttl``: how long
    Kubernetes keeps events; ``connect_warmup``: how long the connect URL answers 503 after
    Running (Skaha before CANFAR 2026.2, without readiness probes: about 30 s).
    """

    queue: timedelta = timedelta(seconds=0.5)
    pull: timedelta = timedelta(seconds=1)
    run: timedelta = timedelta(seconds=5)
    terminating: timedelta = timedelta(seconds=1)
    ttl_headless: timedelta = timedelta(seconds=30)
    ttl_interactive: timedelta = timedelta(seconds=60)
    session_expiry: timedelta = timedelta(seconds=600)
    headless_deadline: timedelta = timedelta(days=14)
    events_ttl: timedelta = timedelta(hours=1)
    connect_warmup: timedelta = timedelta(0)

    @classmethod
    def realistic(cls) -> SkahaTimings:
        """Timings close to production CANFAR (SKAHA.md §1.8, §3, §5.2)."""
        return cls(
            queue=timedelta(seconds=1),
            pull=timedelta(seconds=8),
            run=timedelta(seconds=60),
            terminating=timedelta(seconds=30),
            ttl_headless=timedelta(seconds=3600),
            ttl_interactive=timedelta(seconds=86400),
            session_expiry=timedelta(seconds=345600),
            headless_deadline=timedelta(seconds=1209600),
        )


@dataclass(frozen=True)
class FakeImage:
    """An image in the platform's public image cache (``GET /image``)."""

    id: str
    types: tuple[str, ...]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.id.encode()).hexdigest()


DEFAULT_IMAGES = (
    FakeImage("images.canfar.net/skaha/terminal:1.1.2", ("headless",)),
    FakeImage("images.canfar.net/skaha/astroml:latest", ("notebook", "headless")),
    FakeImage("images.canfar.net/skaha/desktop:latest", ("desktop",)),
    FakeImage("images.canfar.net/skaha/carta:4.1", ("carta",)),
    FakeImage("images.canfar.net/skaha/firefly:2025.1", ("firefly",)),
    FakeImage("images.canfar.net/skaha/demo-app:1.0", ("contributed",)),
)


def _memory_options() -> tuple[int, ...]:
    return (1, 2, *range(4, 193, 2))


@dataclass(frozen=True)
class SkahaCatalogue:
    """What ``/context``, ``/repository`` and ``/image`` report (Skaha chart defaults)."""

    registry_hosts: tuple[str, ...] = ("images.canfar.net",)
    images: tuple[FakeImage, ...] = DEFAULT_IMAGES
    core_options: tuple[int, ...] = tuple(range(1, 17))
    core_default: int = 2
    core_request: int = 1
    core_limit: int = 8
    memory_options: tuple[int, ...] = field(default_factory=_memory_options)
    memory_default: int = 8
    memory_request: int = 4
    memory_limit: int = 32
    gpu_options: tuple[int, ...] = tuple(range(1, 29))
    max_interactive_sessions: int = 5
    home_base_path: str = "arc/home"
    cluster_cores: int = 64
    """What ``view=stats`` says the cluster can give (``cpuCoresAvailable``)."""
    cluster_memory_gib: int = 192
    """What ``view=stats`` says the cluster can give (``ramAvailable``)."""


@dataclass(frozen=True)
class SkahaQuirks:
    """Switches for real-world behaviours (SKAHA.md §5.4, §5.5), all off by default."""

    legacy_delete_404: bool = False
    """DELETE of an unknown id answers 404 (body = the id), another user's 403, as in v0."""
    metrics_missing: bool = False
    """Omit ``ramInUse``/``cpuCoresInUse``; ``view=stats`` answers 503."""
    start_time_without_seconds: bool = False
    """Print ``startTime`` as ``YYYY-MM-DDTHH:MMZ``."""
    max_interactive_sessions_as_string: bool = False
    """``/context`` gives ``maxInteractiveSessions`` as a string, as the file-based variant."""
    available: bool = True
    """What ``/skaha/availability`` says."""
    no_capabilities: bool = False
    """``/skaha/capabilities`` answers 404, as a site without VOSI capabilities."""
    v0_only: bool = False
    """``/skaha/capabilities`` lists only the legacy v0 session API, as a site not upgraded."""


class Endpoint(StrEnum):
    """The operations the fake counts requests for and can inject faults into."""

    LIST_SESSIONS = "list_sessions"
    LIST_INTERACTIVE = "list_interactive"
    """``GET /session?view=interactive``: the caller's non-headless sessions."""
    SESSION_STATS = "session_stats"
    CREATE_SESSION = "create_session"
    GET_SESSION = "get_session"
    SESSION_LOGS = "session_logs"
    SESSION_EVENTS = "session_events"
    MODIFY_SESSION = "modify_session"
    """``POST /session/{id}``, i.e. renew."""
    DELETE_SESSION = "delete_session"
    IMAGES = "images"
    CONTEXT = "context"
    REPOSITORY = "repository"
    AVAILABILITY = "availability"
    CAPABILITIES = "capabilities"
    CONNECT = "connect"
    """The session UI behind a ``connectURL``."""


class FaultKind(StrEnum):
    """What an injected fault does to a matching request."""

    ERROR = "error"
    """500 ``unexpected exception: <message>``."""
    UNAVAILABLE = "unavailable"
    """503 ``temporarily unavailable: <path>`` with ``Retry-After``."""
    UNAUTHORIZED = "unauthorized"
    """401 with ``WWW-Authenticate``, as for an expired token."""
    FORBIDDEN = "forbidden"
    """403 ``Not authorized to use the skaha system``."""
    BAD_REQUEST = "bad_request"
    """400 with cadc-rest's IllegalArgumentException quirk and ``message``."""
    DELAY = "delay"
    """Wait ``delay`` seconds of real time, then answer normally."""
    RESET = "reset"
    """Close the connection without any response."""


@dataclass(frozen=True)
class Fault:
    """A fault for requests matching ``endpoint`` and ``user`` (None matches any).

    It fires ``times`` times (None: until cleared), each match with ``probability``.
    """

    kind: FaultKind
    endpoint: Endpoint | None = None
    user: str | None = None
    times: int | None = 1
    probability: float = 1.0
    delay: float = 0.0
    retry_after: int = 5
    message: str | None = None
    after: bool = False
    """Carry the request out first, then answer with the fault instead: e.g. a create
    whose session exists but whose answer is lost (a reset or a 503 after the fact)."""
