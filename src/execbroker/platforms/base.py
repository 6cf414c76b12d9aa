"""The one small interface every platform implements: prepare, poll, release.

Every call is idempotent by component UUID: preparing something the platform already has
adopts it; releasing something already gone reports it released. That is what lets the
engine retry after a crash without starting or releasing anything twice.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from execbroker.exceptions import RequestRefusedError
from execbroker.model.capacity import Amounts
from execbroker.model.phases import ComponentPhase, MessageLevel
from execbroker.model.records import ComponentRecord, ComponentRole, SessionRecord
from execbroker.platforms.extensions import unsupported_extensions

if TYPE_CHECKING:
    from execbroker.model.plan import Plan

__all__ = [
    "OwnerPhases",
    "Platform",
    "PlatformError",
    "PlatformHealth",
    "PlatformLimits",
    "PlatformNote",
    "PlatformState",
    "PlatformStatus",
    "PlatformUnavailableError",
    "Work",
]


OwnerPhases = Callable[[set[UUID]], Awaitable[Mapping[UUID, ComponentPhase]]]
"""The phases of the components the database knows among these (for a platform's sweep)."""


class PlatformState(StrEnum):
    """What a platform says of one of its objects; the engine turns it into a component phase."""

    PREPARING = "PREPARING"
    READY = "READY"  # prepared; for compute: up but not (yet) running the executable
    RUNNING = "RUNNING"  # compute only: the executable runs
    EXITED = "EXITED"  # compute only: the executable ended (see exit_code)
    FAILED = "FAILED"
    RELEASING = "RELEASING"
    RELEASED = "RELEASED"
    MISSING = "MISSING"  # the platform has no such object


@dataclass(frozen=True)
class PlatformNote:
    """A fact worth keeping in the component's messages: a staged file's checksum, the
    image that will run, the last lines a finished executable printed.
    """

    template: str
    values: dict[str, str] = field(default_factory=dict)
    level: MessageLevel = MessageLevel.INFO


@dataclass(frozen=True)
class PlatformStatus:
    """A platform's answer about one object: its state, why, an exit code, and when to ask again.

    ``connectors`` are the URLs it offers into a running compute; ``notes`` are recorded on the
    component when it becomes available and when it exits. ``queued``: the platform holds the
    object in its queue, not yet admitted to the cluster (Skaha: Pending without a start
    time); the engine gives it the queue budget instead of its preparing budget.
    """

    state: PlatformState
    message: str | None = None
    exit_code: int | None = None
    # When it is worth asking again; None: the platform cannot tell.
    next_check: timedelta | None = None
    connectors: list[dict[str, Any]] = field(default_factory=list)
    # Recorded by the engine when the component becomes AVAILABLE and when it exits.
    notes: tuple[PlatformNote, ...] = ()
    queued: bool = False


@dataclass(frozen=True)
class Work:
    """A component to act on, with its session for context (executable, mounts, owner)."""

    session: SessionRecord
    component: ComponentRecord

    @property
    def uuid(self) -> UUID:
        return self.component.uuid

    @property
    def role(self) -> ComponentRole:
        return self.component.role


class PlatformError(Exception):
    """A platform call failed; the message is fit to show the user."""


class PlatformUnavailableError(Exception):
    """The platform cannot act now (unreachable, or its credentials need renewing).

    Not the component's fault, so not a :class:`PlatformError`: the engine leaves the
    component where it is and tries the step again after ``retry_after``.
    """

    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class PlatformHealth:
    """What ``/healthz`` says about the platform (:meth:`Platform.health`); ``message`` is
    for the operator.
    """

    available: bool
    message: str | None = None


@dataclass(frozen=True)
class PlatformLimits:
    """What the planner may not book past on this platform, beyond the configured pool
    (:meth:`Platform.limits`). The defaults limit nothing.

    ``interactive_sessions``: how many interactive sessions one account may have at once
    (Skaha's ``maxInteractiveSessions``, Pending and Running alike); None: no limit.
    ``per_owner``: each owner is an account of their own (per-user mode); otherwise every
    session shares one account. ``interactive_elsewhere``: interactive sessions the (shared)
    account has that the broker did not book, such as a person's own portal sessions: they
    count at every instant. ``free`` and ``free_until``: the cores and memory the platform
    shows free now (its other amounts unlimited), and until when that reading stands for
    "now"; None when it is not read.
    """

    name: str = "the platform"
    interactive_sessions: int | None = None
    per_owner: bool = False
    interactive_elsewhere: int = 0
    free: Amounts | None = None
    free_until: datetime | None = None


class Platform(abc.ABC):
    """Where components run: prepare, poll and release, each idempotent by component UUID.

    The engine calls these with a deadline and treats a call that fails or times out as one to
    try again later, so an implementation may be called again for an object it already has, and
    must answer from what it has. ``shape`` says what of a plan the platform can run.
    """

    name: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect, load state; called before the engine reconciles."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Close connections."""

    def health(self) -> PlatformHealth:
        """Whether the platform can be used now, from what it already knows (must not block).

        The default is available: a platform that can be unusable for a while (Skaha with a
        refused refresh token, a Docker daemon that went away) says so and what to do.
        """
        return PlatformHealth(available=True)

    def shape(self, plan: Plan) -> Plan:
        """Fit a validated request to what this platform can run, at planning time.

        Returns the plan, narrowed where the platform only offers some amounts (e.g. the
        cores and memory of Skaha's ``/context`` options), or raises
        :class:`~execbroker.exceptions.RequestRefusedError` with a message per problem
        (an image from a registry it may not pull, an argument it cannot pass on), so that
        the user gets ``NO`` with reasons instead of an offer that would fail later.
        Must not block: it works from what :meth:`start` (or a background refresh) read.
        The default refuses the Skaha extension fields (:mod:`.extensions`).
        """
        problems = unsupported_extensions(plan, platform=self.name)
        if problems:
            raise RequestRefusedError(problems)
        return plan

    def limits(self) -> PlatformLimits:
        """The limits the planner books against beyond the configured pool, from what the
        platform already knows (must not block). The default limits nothing.
        """
        return PlatformLimits()

    def interactive(self, plan: Plan) -> bool:
        """Whether a session of ``plan`` counts toward an account's interactive-session
        limit (:attr:`PlatformLimits.interactive_sessions`). The default: it does not.
        """
        return False

    @abc.abstractmethod
    async def prepare(self, work: Work) -> PlatformStatus:
        """Start preparing the component (or adopt what is already there)."""

    @abc.abstractmethod
    async def poll(self, work: Work) -> PlatformStatus:
        """Where the component is now."""

    @abc.abstractmethod
    async def release(self, work: Work) -> PlatformStatus:
        """Start releasing the component (or report it released)."""

    @abc.abstractmethod
    async def objects(self) -> set[UUID]:
        """Components this broker has on the platform and has not released."""

    @abc.abstractmethod
    async def release_orphan(self, uuid: UUID) -> None:
        """Release an object no live component owns (found when reconciling)."""

    def sweep_periodically(self, phases: OwnerPhases) -> None:  # noqa: B027 - optional hook
        """Called once the engine has reconciled: a platform whose objects can appear
        behind the broker's back (a create that lands late) deletes, every so often, those
        that no live component owns or that duplicate one, asking ``phases`` who is live.
        Stopped by :meth:`stop`.
        """
