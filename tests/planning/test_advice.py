"""The planner's advice in numbers: why an offer starts late, and what would fit a NO."""

from __future__ import annotations

from datetime import timedelta

import pytest

from execbroker.config import Settings
from execbroker.exceptions import RequestRefusedError
from execbroker.model.capacity import Amounts, Hold
from execbroker.model.plan import Range
from execbroker.model.wire import MessageItem
from execbroker.planning.advice import LATER_HORIZON
from execbroker.planning.calendar import Usage
from execbroker.planning.offers import AccountLimit, Bounds, OfferSearch, generate_offers
from execbroker.planning.profile import profile_from_settings
from execbroker.planning.validation import validate_request
from tests.planning.test_calendar import T0, _plan, at
from tests.support.wire import example

NOW = T0 - timedelta(days=1)
PROFILE = profile_from_settings(Settings())
# The notebook example plans 14 s of preparing before its start and 3 s of release after.
LEAD = timedelta(seconds=14)


def _search(holds: list[Hold], *, cores: int = 8, memory: int = 4, **schedule: str) -> OfferSearch:
    plan = _plan(Settings(), **schedule)  # 10:00-13:00 start, PT2H, unless ``schedule``
    plan.cores = Range(cores, cores)
    plan.memory = Range(memory, memory)
    return generate_offers(
        plan,
        profile=PROFILE,
        usage=Usage(holds),
        now=NOW,
        max_offers=4,
        later=lambda _start, _end: Usage(holds),
    )


def _advice(search: OfferSearch) -> dict[str, dict[str, str]]:
    """What would fit, by the change it names."""
    found: dict[str, dict[str, str]] = {}
    for message in search.problems:
        values = message.values or {}
        if "change" in values:
            found[values["change"]] = {**values, "message": str(message.message)}
    return found


def test_a_no_says_how_many_cores_fit_and_from_when_all_of_them_do() -> None:
    busy = [Hold("other", at(-5), at(10), Amounts(60, 0, 0))]  # 4 of 64 cores free until 20:00

    search = _search(busy)

    assert search.offers == []
    advice = _advice(search)
    assert advice["cores"]["cores"] == "4"
    assert advice["cores"]["message"] == "/compute/cores/min: fits with 4 cores instead of 8"
    assert advice["start"]["start"] == "2030-01-01T20:00:14Z", "when the hold ends, plus the lead"
    assert "duration" not in advice, "no run of 8 cores fits at any start in the interval"
    assert _search(busy, cores=4).offers, "4 cores fit"
    later = _search(busy, start="2030-01-01T20:00:14Z/PT1H")
    assert later.offers[0].start == at(10) + LEAD


def test_a_no_says_how_long_a_run_fits() -> None:
    # Free until 11:00: a run starting at 10:00 may last until 11:00 less its release.
    busy = [Hold("other", at(1), at(10), Amounts(60, 0, 0))]

    search = _search(busy)

    advice = _advice(search)
    assert advice["duration"]["duration"] == "PT59M", "10:00 to 10:59:57, on whole minutes"
    assert advice["duration"]["message"] == (
        "/schedule/requested/duration: fits with PT59M instead of PT2H"
    )
    assert advice["cores"]["cores"] == "4"
    assert _search(busy, duration="PT59M").offers[0].start == at(0)


def test_a_no_says_how_much_memory_fits() -> None:
    busy = [Hold("other", at(-5), at(10), Amounts(0, 250, 0))]  # 6 of 256 GiB free

    advice = _advice(_search(busy, cores=2, memory=16))

    assert advice["memory"]["memory"] == "6"
    assert advice["memory"]["message"] == (
        "/compute/memory/min: fits with 6 GiB of memory instead of 16"
    )
    assert "cores" not in advice, "cores are not what is short"
    assert _search(busy, cores=2, memory=6).offers


def test_an_interval_too_soon_to_prepare_is_told_the_first_start_that_fits() -> None:
    search = _search([], cores=2, start="2029-12-31T10:00:05Z/PT1S")

    advice = _advice(search)

    assert list(advice) == ["start"]
    assert advice["start"]["start"] == "2029-12-31T10:00:14Z", "now plus the lead"


def test_an_account_at_its_interactive_limit_is_told_when_one_ends() -> None:
    notebooks = [Hold(f"nb-{i}", at(-1), at(1.5), Amounts(1, 1, 0, 1)) for i in range(2)]
    plan = _plan(Settings(), start="2030-01-01T10:00:00Z/PT30M")

    search = generate_offers(
        plan,
        profile=PROFILE,
        usage=Usage(notebooks),
        now=NOW,
        max_offers=4,
        bounds=Bounds.of(PROFILE.capacity, limit=AccountLimit("Skaha", 2)),
        later=lambda _start, _end: Usage(notebooks),
    )

    advice = _advice(search)
    assert list(advice) == ["start"], "fewer cores or a shorter run free no session"
    assert advice["start"]["start"] == "2030-01-01T11:30:14Z"


def test_a_no_that_no_one_change_fixes_says_so() -> None:
    full = [Hold("other", at(-5), at(24 * 30), Amounts(64, 0, 0))]

    advice = _advice(_search(full))

    assert list(advice) == ["none"]
    assert advice["none"]["horizon"] == "P7D" == "P" + f"{LATER_HORIZON.days}D"


def _waits(messages: tuple[MessageItem, ...]) -> dict[str, str]:
    (waits,) = messages
    assert waits.values is not None
    return {**waits.values, "message": str(waits.message)}


def test_an_offer_that_waits_names_the_resource_and_who_holds_it() -> None:
    holds = [
        Hold("accepted-1", at(-5), at(1), Amounts(31, 0, 0)),
        Hold("accepted-2", at(-5), at(0.5), Amounts(31, 0, 0)),
        Hold("offers-1", at(-5), at(2), Amounts(1, 0, 0), offered=True),
        Hold("offers-1", at(-5), at(2), Amounts(2, 0, 0), offered=True),  # its sibling
        Hold("memory-only", at(-5), at(2), Amounts(0, 8, 0)),
    ]

    search = _search(holds, cores=4)

    first = search.offers[0]
    assert first.start == at(0.5) + LEAD, "when the first accepted session ends"
    waits = _waits(first.notes)
    assert waits["binding"] == "cores"
    assert (waits["wanted"], waits["free"], waits["held"], waits["capacity"]) == (
        "4",
        "0",
        "64",
        "64",
    )
    assert (waits["holders"], waits["offers"]) == ("2", "1"), "siblings are one offer set"
    assert waits["message"] == (
        "Waits for its start at 2030-01-01T10:30:14Z: at 2030-01-01T10:00:00Z, the earliest "
        "start the request allows, 0 of the 4 cores it needs are free; 64 of 64 are held at "
        "2030-01-01T10:00:00Z by 2 session(s) accepted before it and 1 unexpired offer set(s)"
    )
    later = [o for o in search.offers if o.start != first.start]
    assert later, "later starts are offered too"
    assert all(not o.notes for o in later), "later starts were chosen, not forced"
    assert not _search([], cores=4).offers[0].notes, "no note when it starts when allowed"


def test_a_notebook_that_waits_for_the_account_limit_says_so() -> None:
    notebooks = [Hold(f"nb-{i}", at(-1), at(1.5), Amounts(1, 1, 0, 1)) for i in range(2)]
    plan = _plan(Settings())

    search = generate_offers(
        plan,
        profile=PROFILE,
        usage=Usage(notebooks),
        now=NOW,
        max_offers=1,
        bounds=Bounds.of(PROFILE.capacity, limit=AccountLimit("Skaha", 2)),
    )

    waits = _waits(search.offers[0].notes)
    assert waits["binding"] == "interactive"
    assert waits["message"] == (
        "Waits for its start at 2030-01-01T11:30:14Z: at 2030-01-01T10:00:00Z, the earliest "
        "start the request allows, the account has 2 of the 2 interactive sessions Skaha "
        "allows at once; 2 session(s) accepted before it hold them at 2030-01-01T10:00:00Z"
    )


def test_more_than_the_platform_has_is_told_that_no_later_start_helps() -> None:
    document = example("notebook-request.yaml")
    document["compute"]["cores"] = {"min": 80, "max": 80}

    with pytest.raises(RequestRefusedError) as refused:
        validate_request(document, settings=Settings(), profile=PROFILE, now=NOW)

    (advice,) = [m for m in refused.value.messages if "change" in (m.values or {})]
    assert advice.values is not None
    assert (advice.values["change"], advice.values["most"]) == ("none", "64")
    assert advice.message == (
        "/compute/cores/min: no later start or shorter run fits 80 cores: the platform has 64 "
        "in all"
    )
