"""The capacity calendar and the offers it allows, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from execbroker.config import Settings
from execbroker.model.capacity import UNLIMITED, Amounts, Hold
from execbroker.model.isotime import Interval
from execbroker.model.phases import MessageLevel
from execbroker.model.plan import Plan
from execbroker.planning.calendar import Usage
from execbroker.planning.offers import (
    AccountLimit,
    Bounds,
    FreeNow,
    SessionTimes,
    generate_offers,
)
from execbroker.planning.profile import profile_from_settings
from execbroker.planning.validation import validate_request
from tests.support.wire import example

T0 = datetime(2030, 1, 1, 10, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_siblings_hold_their_peak_and_groups_add_up() -> None:
    usage = Usage(
        [
            Hold("offers-1", at(0), at(2), Amounts(10, 4, 0)),
            Hold("offers-1", at(1), at(3), Amounts(20, 2, 0)),  # alternative to the first
            Hold("session-9", at(1), at(2), Amounts(5, 5, 5)),
        ]
    )
    assert usage.peak(at(0), at(1)) == Amounts(10, 4, 0)
    assert usage.peak(at(1), at(2)) == Amounts(25, 9, 5)
    assert usage.peak(at(2), at(3)) == Amounts(20, 2, 0)
    assert usage.peak(at(3), at(9)) == Amounts()
    assert usage.peak(at(-5), at(0)) == Amounts()
    assert list(usage.breakpoints(at(0), at(3))) == [at(1), at(2)]


def test_first_exceeding_finds_where_an_extension_stops() -> None:
    usage = Usage([Hold("a", at(2), at(3), Amounts(50, 0, 0))])
    limit = Amounts(64, 100, 100)
    assert usage.first_exceeding(at(0), at(5), extra=Amounts(15, 0, 0), limit=limit) == at(2)
    assert usage.first_exceeding(at(0), at(5), extra=Amounts(14, 0, 0), limit=limit) is None
    assert usage.first_exceeding(at(2.5), at(5), extra=Amounts(20, 0, 0), limit=limit) == at(2.5)


def _plan(settings: Settings, **schedule: str) -> Plan:
    document = example("notebook-request.yaml")
    document["schedule"]["requested"].update(schedule)
    plan, _ = validate_request(
        document,
        settings=settings,
        profile=profile_from_settings(settings),
        now=T0 - timedelta(days=1),
    )
    return plan


def test_offers_start_when_the_calendar_frees_up() -> None:
    settings = Settings()
    profile = profile_from_settings(settings)
    plan = _plan(settings)  # 2-4 cores for 2 h, starting 10:00-13:00
    lead = SessionTimes.of(plan, profile).lead
    # 62 cores are busy until 11:00: only 2 are free before then.
    busy = Hold("other", at(-5), at(1), Amounts(62, 0, 0))

    search = generate_offers(
        plan, profile=profile, usage=Usage([busy]), now=T0 - timedelta(days=1), max_offers=4
    )

    starts = [o.start for o in search.offers]
    assert starts == sorted(starts)
    first = search.offers[0]
    assert first.start == at(0), "2 cores fit at once"
    assert (first.cores, first.memory_gib) == (2, 4)
    larger = search.offers[1]
    assert larger.start == at(0)
    assert (larger.cores, larger.memory_gib) == (2, 8), "no more cores are free at 10:00"
    later = search.offers[2:]
    assert later, "later starts are offered too"
    assert all(at(0) < o.start <= at(3) for o in later)
    # A request for 4 cores must wait until the busy hold ends, and its preparing with it.
    plan4 = _plan(settings)
    plan4.cores = type(plan4.cores)(4, 4)
    search4 = generate_offers(
        plan4, profile=profile, usage=Usage([busy]), now=T0 - timedelta(days=1), max_offers=4
    )
    assert search4.offers[0].start == at(1) + lead


def test_nothing_fits_names_the_resource_and_what_is_free() -> None:
    settings = Settings()
    profile = profile_from_settings(settings)
    plan = _plan(settings)
    full = Hold("other", at(-5), at(10), Amounts(63, 0, 0))

    search = generate_offers(
        plan, profile=profile, usage=Usage([full]), now=T0 - timedelta(days=1), max_offers=4
    )

    assert search.offers == []
    problem, advice = search.problems  # and what would fit (tests/planning/test_advice.py)
    assert advice.values is not None
    assert advice.values["change"] == "cores"
    assert problem.values is not None
    assert problem.values["path"] == "/compute/cores/min"
    assert problem.message is not None
    assert "no window of PT2H with 2 cores free" in problem.message
    assert "at most 1 free" in problem.message


def test_a_long_window_is_searched_to_its_end() -> None:
    settings = Settings()
    profile = profile_from_settings(settings)
    plan = _plan(settings, start="2030-01-01T10:00:00Z/P5D", duration="P2D")
    blocked = Hold("other", at(-5), at(24 * 3), Amounts(64, 0, 0))

    search = generate_offers(
        plan, profile=profile, usage=Usage([blocked]), now=T0 - timedelta(days=1), max_offers=4
    )

    assert search.offers, "a start three days in still fits"
    assert search.offers[0].start >= at(24 * 3)
    assert plan.window == Interval(at(0), at(24 * 5))


def test_an_interval_narrower_than_a_second_is_met_at_its_instant() -> None:
    """Offers start on whole seconds, but a start interval that holds no whole second (here
    one instant, 10:00:00.5) is offered that instant rather than refused as too soon."""
    settings = Settings()
    profile = profile_from_settings(settings)
    instant = "2030-01-01T10:00:00.500Z"
    plan = _plan(settings, start=f"{instant}/PT0S")

    search = generate_offers(
        plan, profile=profile, usage=Usage([]), now=T0 - timedelta(days=1), max_offers=4
    )

    assert search.problems == []
    assert {o.start for o in search.offers} == {at(0) + timedelta(milliseconds=500)}
    wide = _plan(settings, start=f"{instant}/PT1M")
    search = generate_offers(
        wide, profile=profile, usage=Usage([]), now=T0 - timedelta(days=1), max_offers=4
    )
    assert search.offers[0].start == at(0) + timedelta(seconds=1), "whole seconds otherwise"


def test_what_the_platform_shows_free_now_caps_offers_until_the_next_reading() -> None:
    settings = Settings()
    profile = profile_from_settings(settings)
    now = T0 - timedelta(minutes=1)
    plan = _plan(settings)  # 2-4 cores for 2 h, starting 10:00-13:00
    lead = SessionTimes.of(plan, profile).lead
    reading = FreeNow(Amounts(3, 6, UNLIMITED, UNLIMITED), until=at(1))
    bounds = Bounds.of(profile.capacity, free_now=reading)

    search = generate_offers(
        plan, profile=profile, usage=Usage([]), now=now, max_offers=4, bounds=bounds
    )

    first, larger = search.offers[:2]
    assert first.start == larger.start == at(0)
    assert (larger.cores, larger.memory_gib) == (3, 6), "no more than the reading shows"
    scarce = FreeNow(Amounts(1, 64, UNLIMITED, UNLIMITED), until=at(1))
    later = generate_offers(
        plan,
        profile=profile,
        usage=Usage([]),
        now=now,
        max_offers=1,
        bounds=Bounds.of(profile.capacity, free_now=scarce),
    )
    assert later.offers[0].start >= at(1) + lead, "once the reading no longer stands"


def test_a_notebook_past_the_account_limit_starts_when_one_ends_or_is_refused() -> None:
    settings = Settings()
    profile = profile_from_settings(settings)
    now = T0 - timedelta(days=1)
    plan = _plan(settings)
    notebooks = [Hold(f"nb-{i}", at(-1), at(1.5), Amounts(1, 1, 0, 1)) for i in range(2)]
    bounds = Bounds.of(profile.capacity, limit=AccountLimit("Skaha", 2))

    waits = generate_offers(
        plan, profile=profile, usage=Usage(notebooks), now=now, max_offers=4, bounds=bounds
    )
    lead = SessionTimes.of(plan, profile).lead
    assert waits.offers[0].start >= at(1.5) + lead
    assert all(o.interactive == 1 for o in waits.offers)

    soon = _plan(settings, start="2030-01-01T10:00:00Z/PT30M")
    refused = generate_offers(
        soon, profile=profile, usage=Usage(notebooks), now=now, max_offers=4, bounds=bounds
    )
    assert refused.offers == []
    assert [m.message for m in refused.problems if m.level == MessageLevel.ERROR] == [
        "/executable: Skaha allows at most 2 interactive sessions per account at once; 2 are "
        "booked over every window of PT2H starting between 2030-01-01T10:00:00Z and "
        "2030-01-01T10:30:00Z"
    ]

    elsewhere = Bounds.of(profile.capacity, limit=AccountLimit("Skaha", 2, elsewhere=1))
    one_booked = generate_offers(
        soon, profile=profile, usage=Usage(notebooks[:1]), now=now, max_offers=4, bounds=elsewhere
    )
    assert str(one_booked.problems[0].message).endswith("(1 of them started outside this broker)")
    headless = Bounds.of(profile.capacity)
    assert generate_offers(
        soon, profile=profile, usage=Usage(notebooks * 5), now=now, max_offers=1, bounds=headless
    ).offers, "a plan no account limit counts is not held back by the notebooks"


def test_the_busiest_instant_and_who_holds_it_then() -> None:
    usage = Usage(
        [
            Hold("a", at(0), at(3), Amounts(10, 0, 0)),
            Hold("b", at(1), at(2), Amounts(20, 0, 0)),
            Hold("offers", at(1), at(2), Amounts(1, 1, 0), offered=True),
            Hold("offers", at(1.5), at(2), Amounts(2, 1, 0), offered=True),  # its sibling
            Hold("memory", at(0), at(3), Amounts(0, 8, 0)),
        ]
    )
    assert usage.busiest(at(0), at(3), "cores") == at(1.5)
    assert usage.busiest(at(-1), at(0.5), "cores") == at(0)
    assert sorted(h.group for h in usage.holders(at(1.5), "cores")) == ["a", "b", "offers"]
    assert [h.group for h in usage.holders(at(2.5), "memory_gib")] == ["memory"]
