"""What a search books within: the pool, an account's limit on interactive sessions, and
what the platform shows free now.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from execbroker.model.capacity import UNLIMITED, Amounts

__all__ = ["AccountLimit", "Bounds", "FreeNow"]


@dataclass(frozen=True)
class AccountLimit:
    """An account's limit on interactive sessions at once (Skaha's
    ``maxInteractiveSessions``): ``most`` of them on ``platform``, of which ``elsewhere``
    are taken by sessions the broker did not book.
    """

    platform: str
    most: int
    elsewhere: int = 0


@dataclass(frozen=True)
class FreeNow:
    """What the platform shows free now (cores and memory; the rest unlimited), standing
    for "now" until ``until``.
    """

    amounts: Amounts
    until: datetime


@dataclass(frozen=True)
class Bounds:
    """What a search books within: the pool's ``capacity`` (its ``interactive`` what the
    account may still have at once), the interactive sessions the plan books (0 or 1) and
    under which ``limit``, and what the platform shows free now.
    """

    capacity: Amounts
    interactive: int = 0
    limit: AccountLimit | None = None
    free_now: FreeNow | None = None

    @classmethod
    def of(
        cls,
        capacity: Amounts,
        *,
        limit: AccountLimit | None = None,
        free_now: FreeNow | None = None,
    ) -> Bounds:
        """The bounds of a plan that books one of ``limit``'s sessions (None: no session
        an account limit counts) within the pool ``capacity``.
        """
        if limit is None:
            return cls(replace(capacity, interactive=UNLIMITED), free_now=free_now)
        room = max(limit.most - limit.elsewhere, 0)
        return cls(replace(capacity, interactive=room), 1, limit, free_now)
