"""What a request may take: the per-user quotas (stored records, live offers, active
sessions) and whether a request fits in the pool. Each decision, with its 429 message, is
made here once.

The stored-records quota is checked before planning, outside any booking: concurrent
requests may pass it together, by at most their number. The others are called from inside a
booking (:meth:`Calendar.book
<execbroker.storage.booking.Calendar.book>`), so that it is made on facts read in the same
transaction as the writes that follow: under the pool's lock, or (optimistically) with the
booking told what the decision relied on, which it checks again when it settles. Two
requests can therefore never both pass a quota or both take the last of the pool.

The platform's own limits (:meth:`Platform.limits
<execbroker.platforms.base.Platform.limits>`) become the bounds a search books within
(:func:`bounds_for`): an account's interactive sessions are a resource of the pool, counted
per owner in per-user mode (:func:`account_of`).
"""

from __future__ import annotations

from datetime import datetime

from execbroker.exceptions import QuotaExceededError
from execbroker.model.capacity import UNLIMITED, Amounts
from execbroker.planning.offers import AccountLimit, Bounds, FreeNow
from execbroker.platforms.base import PlatformLimits
from execbroker.storage.booking import Booking

__all__ = [
    "account_of",
    "bounds_for",
    "check_active_sessions",
    "check_stored_records",
    "fits",
    "offers_allowed",
    "total_if_it_fits",
]


def check_stored_records(owner: str, *, stored: int, limit: int) -> None:
    """429 when ``owner`` already has ``stored`` offer sets (NO included) and direct
    sessions stored, as many as one user may (``limit``).
    """
    if stored >= limit:
        raise QuotaExceededError(
            "{user} already has {count} offer sets and direct sessions stored, the most "
            "one user may store ({limit}); ended ones are deleted after the retention "
            "period",
            {"user": owner, "count": stored, "limit": limit},
        )


def offers_allowed(
    booking: Booking, owner: str, *, now: datetime, limit: int | None, most: int
) -> int:
    """How many offers ``owner`` may be made now, at most ``most``: 429 when their quota of
    ``limit`` unexpired offers (None: no quota) is used up.
    """
    if limit is None:
        return most
    live = booking.live_offers(owner, now=now, at_most=limit)
    if live >= limit:
        raise QuotaExceededError(
            "{user} already holds {count} unexpired offers, the most one user may hold; "
            "accept or reject some, or wait for them to expire",
            {"user": owner, "count": live},
        )
    return min(most, limit - live)


def check_active_sessions(booking: Booking, owner: str, *, limit: int | None) -> None:
    """429 when ``owner`` already has ``limit`` sessions accepted and not yet ended (None:
    no quota): one more may not be accepted or started.
    """
    if limit is None:
        return
    active = booking.active_sessions(owner, at_most=limit)
    if active >= limit:
        raise QuotaExceededError(
            "{user} already has {count} active sessions, the most one user may have; "
            "wait for one to end or cancel one",
            {"user": owner, "count": active},
        )


def bounds_for(capacity: Amounts, limits: PlatformLimits, *, interactive: bool) -> Bounds:
    """What a plan books within on the platform: the pool ``capacity``; if the plan is
    ``interactive`` and the platform limits those per account, one of the account's
    sessions under that limit; and what the platform shows free now, if it is read.
    """
    limit = None
    if interactive and limits.interactive_sessions is not None:
        limit = AccountLimit(limits.name, limits.interactive_sessions, limits.interactive_elsewhere)
    free_now = None
    if limits.free is not None and limits.free_until is not None:
        free_now = FreeNow(
            Amounts(limits.free.cores, limits.free.memory_gib, UNLIMITED, UNLIMITED),
            limits.free_until,
        )
    return Bounds.of(capacity, limit=limit, free_now=free_now)


def account_of(owner: str, limits: PlatformLimits) -> str | None:
    """The platform account ``owner``'s sessions count against: their own in per-user
    mode; None (one account that every session shares) otherwise.
    """
    return owner if limits.per_owner else None


def total_if_it_fits(
    booking: Booking,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    largest: Amounts,
    capacity: Amounts,
    account: str | None = None,
) -> Amounts | None:
    """The sum of every hold over ``[start, end)`` if even it leaves room for ``largest``
    within ``capacity`` (then no instant in the window can be short of it, and the exact
    calendar need not be built); None if it does not. Interactive sessions count as
    ``account``'s limit counts them (:func:`account_of`).
    """
    total = booking.hold_total_keeping_room(
        start, end, now=now, largest=largest, capacity=capacity, account=account
    )
    return total if fits(total, largest, capacity) else None


def fits(held: Amounts, more: Amounts, capacity: Amounts) -> bool:
    """Whether ``more`` fits in ``capacity`` beside what is ``held``."""
    return (held + more).fits_within(capacity)
