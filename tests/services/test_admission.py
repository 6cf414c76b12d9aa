"""The admission decisions, one test each, on a booking that only answers with facts.

What each decision tells the booking it relied on (``at_most``, the room) is what an
optimistic booking checks again when it settles: the end-to-end races are in
``tests/planning/test_accept_race.py`` and ``tests/scale/test_settling.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from execbroker.exceptions import QuotaExceededError
from execbroker.model.capacity import UNLIMITED, Amounts
from execbroker.platforms.base import PlatformLimits
from execbroker.services import admission
from execbroker.storage.booking import Booking

NOW = datetime(2030, 1, 1, 10, tzinfo=UTC)
POOL = Amounts(cores=16, memory_gib=64, storage_gib=100)
NOTHING = Amounts()


class _Facts:
    """What a booking would read, and what each decision said it relied on."""

    def __init__(self, *, live: int = 0, active: int = 0, held: Amounts = NOTHING) -> None:
        self.live, self.active, self.held = live, active, held
        self.relied: list[tuple[str, object]] = []
        self.accounts: list[str | None] = []

    def live_offers(self, owner: str, *, now: datetime, at_most: int) -> int:
        self.relied.append(("live_offers", at_most))
        return self.live

    def active_sessions(self, owner: str, *, at_most: int) -> int:
        self.relied.append(("active", at_most))
        return self.active

    def hold_total_keeping_room(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        largest: Amounts,
        capacity: Amounts,
        account: str | None = None,
    ) -> Amounts:
        self.relied.append(("room", (largest, capacity)))
        self.accounts.append(account)
        return self.held

    def booking(self) -> Booking:
        return cast("Booking", self)


def test_offers_allowed_are_what_the_live_offers_quota_leaves() -> None:
    facts = _Facts(live=3)
    allowed = admission.offers_allowed(facts.booking(), "alice", now=NOW, limit=5, most=10)
    assert allowed == 2
    assert facts.relied == [("live_offers", 5)], "settles only if still within the quota"


def test_offers_allowed_without_a_quota_are_the_most_offered_and_read_nothing() -> None:
    facts = _Facts(live=99)
    assert admission.offers_allowed(facts.booking(), "alice", now=NOW, limit=None, most=4) == 4
    assert facts.relied == []


def test_a_used_up_live_offers_quota_is_429_saying_how_many() -> None:
    with pytest.raises(QuotaExceededError) as refused:
        admission.offers_allowed(_Facts(live=5).booking(), "alice", now=NOW, limit=5, most=10)
    assert str(refused.value) == (
        "alice already holds 5 unexpired offers, the most one user may hold; "
        "accept or reject some, or wait for them to expire"
    )


def test_a_used_up_active_sessions_quota_is_429_saying_how_many() -> None:
    facts = _Facts(active=2)
    with pytest.raises(QuotaExceededError) as refused:
        admission.check_active_sessions(facts.booking(), "bob", limit=2)
    assert str(refused.value) == (
        "bob already has 2 active sessions, the most one user may have; "
        "wait for one to end or cancel one"
    )


def test_below_the_active_sessions_quota_one_more_may_start() -> None:
    facts = _Facts(active=1)
    admission.check_active_sessions(facts.booking(), "bob", limit=2)
    assert facts.relied == [("active", 2)], "settles only if still within the quota"
    admission.check_active_sessions(_Facts(active=50).booking(), "bob", limit=None)


def test_a_full_stored_records_quota_is_429_naming_the_limit() -> None:
    admission.check_stored_records("carol", stored=2, limit=3)
    with pytest.raises(QuotaExceededError) as refused:
        admission.check_stored_records("carol", stored=3, limit=3)
    assert "the most one user may store (3)" in str(refused.value)


def test_the_total_is_used_when_even_it_leaves_room_for_the_largest_request() -> None:
    facts = _Facts(held=Amounts(12, 32, 50))
    largest = Amounts(4, 32, 50)
    end = NOW + timedelta(hours=2)
    total = admission.total_if_it_fits(
        facts.booking(), NOW, end, now=NOW, largest=largest, capacity=POOL
    )
    assert total == Amounts(12, 32, 50)
    assert facts.relied == [("room", (largest, POOL))]


def test_a_total_short_of_room_in_any_one_resource_asks_for_the_exact_calendar() -> None:
    end = NOW + timedelta(hours=2)
    for held in (Amounts(13, 0, 0), Amounts(0, 33, 0), Amounts(0, 0, 51)):
        total = admission.total_if_it_fits(
            _Facts(held=held).booking(),
            NOW,
            end,
            now=NOW,
            largest=Amounts(4, 32, 50),
            capacity=POOL,
        )
        assert total is None, held


def test_fits_counts_every_resource_and_allows_exactly_full() -> None:
    assert admission.fits(Amounts(8, 32, 50), Amounts(8, 32, 50), POOL)
    assert not admission.fits(Amounts(8, 32, 50), Amounts(9, 0, 0), POOL)


def test_a_total_at_the_account_limit_asks_for_the_exact_calendar() -> None:
    limits = PlatformLimits(name="Skaha", interactive_sessions=5)
    bounds = admission.bounds_for(POOL, limits, interactive=True)
    facts = _Facts(held=Amounts(0, 0, 0, 5))
    largest = Amounts(1, 1, 0, bounds.interactive)
    end = NOW + timedelta(hours=2)
    total = admission.total_if_it_fits(
        facts.booking(), NOW, end, now=NOW, largest=largest, capacity=bounds.capacity
    )
    assert total is None, "a sixth interactive session does not fit beside five"
    roomy = _Facts(held=Amounts(0, 0, 0, 4))
    total = admission.total_if_it_fits(
        roomy.booking(), NOW, end, now=NOW, largest=largest, capacity=bounds.capacity
    )
    assert total == Amounts(0, 0, 0, 4)


def test_headless_plans_are_not_held_to_the_account_limit() -> None:
    limits = PlatformLimits(name="Skaha", interactive_sessions=5)
    bounds = admission.bounds_for(POOL, limits, interactive=False)
    assert bounds.interactive == 0
    assert bounds.capacity.interactive == UNLIMITED
    held = Amounts(0, 0, 0, 7)  # more than the limit, as when it was lowered
    assert admission.fits(held, Amounts(1, 1, 0), bounds.capacity)


def test_sessions_started_elsewhere_leave_less_of_the_account_limit() -> None:
    limits = PlatformLimits(name="Skaha", interactive_sessions=5, interactive_elsewhere=2)
    assert admission.bounds_for(POOL, limits, interactive=True).capacity.interactive == 3
    crowded = PlatformLimits(name="Skaha", interactive_sessions=5, interactive_elsewhere=9)
    assert admission.bounds_for(POOL, crowded, interactive=True).capacity.interactive == 0


def test_the_account_is_the_owner_only_in_per_user_mode() -> None:
    assert admission.account_of("alice", PlatformLimits(per_owner=True)) == "alice"
    assert admission.account_of("alice", PlatformLimits(per_owner=False)) is None
