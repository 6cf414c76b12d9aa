"""What the Skaha account and cluster already use: the limits the planner books against.

Skaha refuses a create with ``400 User <u> has reached the maximum of N active sessions``
once the account has N non-headless sessions Pending or Running (``maxInteractiveSessions``
of ``/context``). The broker books its own interactive sessions in its calendar; this module
adds what the calendar cannot know, read on the catalogue interval:

- in single-account mode, the interactive sessions the account has that this broker did not
  start (a person's own portal sessions, another tool's): ``GET /session?view=interactive``,
  those not named with the broker's prefix, Pending or Running. They count at every instant,
  as their end is unknown. In per-user mode they are not read (one more call per user and
  interval); a user's own portal sessions there can still make a create fail.
- with ``skaha_use_stats``, the cluster's free cores and memory (``GET /session?view=stats``):
  every offer whose booking begins before the next reading is capped at it.

A reading that fails keeps the last one (logged once): the sessions counted elsewhere stay
counted, and the free amounts stand until their reading's own horizon has passed, then none
do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta

from execbroker.clock import Clock
from execbroker.model.capacity import Amounts
from execbroker.platforms.base import PlatformLimits
from execbroker.platforms.skaha.client import SkahaClient, SkahaStatus
from execbroker.platforms.skaha.errors import SkahaError
from execbroker.platforms.skaha.mapping import Catalogue

__all__ = ["AccountUsage"]

logger = logging.getLogger(__name__)

_LIVE = frozenset({SkahaStatus.PENDING, SkahaStatus.RUNNING})


@dataclass(frozen=True)
class _Free:
    """A stats reading: what was free, and until when it stands for "now"."""

    amounts: Amounts
    until: datetime


class AccountUsage:
    """The last readings of the account's foreign interactive sessions and the cluster's
    free resources (see the module docstring); :meth:`limits` turns them, with the
    catalogue's ``maxInteractiveSessions``, into the planner's :class:`PlatformLimits`.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        prefix: str,
        per_user: bool,
        use_stats: bool,
        horizon: timedelta,
    ) -> None:
        self._clock = clock
        self._prefix = f"{prefix}-"
        self._per_user = per_user
        self._use_stats = use_stats
        self._horizon = horizon
        self._elsewhere = 0
        self._free: _Free | None = None
        self._problems: dict[str, str] = {}

    @property
    def elsewhere(self) -> int:
        """Interactive sessions of the (shared) account that the broker did not start."""
        return self._elsewhere

    async def refresh(self, client: SkahaClient) -> None:
        """Read what the account and the cluster use now (failures are logged and keep
        the last readings).
        """
        if not self._per_user:
            await self._reading("sessions", self._count_elsewhere(client))
        if self._use_stats:
            await self._reading("stats", self._read_stats(client))

    async def _count_elsewhere(self, client: SkahaClient) -> None:
        sessions = await client.interactive_sessions()
        count = sum(
            1 for s in sessions if s.status in _LIVE and not s.name.startswith(self._prefix)
        )
        if count != self._elsewhere:
            logger.info(
                "interactive Skaha sessions the broker did not start",
                extra={"count": count},
            )
        self._elsewhere = count

    async def _read_stats(self, client: SkahaClient) -> None:
        stats = await client.stats()
        self._free = _Free(
            Amounts(stats.free_cores, stats.free_memory_gib),
            self._clock.now() + self._horizon,
        )

    async def _reading(self, what: str, reading: Awaitable[None]) -> None:
        try:
            await reading
        except SkahaError as failure:
            if self._problems.get(what) != failure.message:
                logger.warning(
                    "cannot read what the Skaha account uses; keeping the last reading",
                    extra={"reading": what, "reason": failure.message},
                )
            self._problems[what] = failure.message
            return
        if self._problems.pop(what, None) is not None:
            logger.info("what the Skaha account uses is read again", extra={"reading": what})

    def limits(self, catalogue: Catalogue | None) -> PlatformLimits:
        """The planner's limits: ``maxInteractiveSessions`` per account (per owner in
        per-user mode), the sessions counted elsewhere, and the free reading while it
        stands.
        """
        free = self._free
        if free is not None and free.until <= self._clock.now():
            free = None
        return PlatformLimits(
            name="Skaha",
            interactive_sessions=(
                catalogue.context.max_interactive_sessions if catalogue is not None else None
            ),
            per_owner=self._per_user,
            interactive_elsewhere=0 if self._per_user else self._elsewhere,
            free=free.amounts if free is not None else None,
            free_until=free.until if free is not None else None,
        )
