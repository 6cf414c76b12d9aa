"""``GET /admin/calendar``: the operator's view of the pool, held against used, exact.

The broker runs on a clock that moves only when the test moves it, so every booking, start
and end falls on a known instant and the numbers can be checked to the second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from execbroker.clock import ManualClock
from execbroker.config import Settings
from execbroker.main import create_app
from execbroker.model.isotime import format_instant, parse_duration
from tests.support.engine import ROLES, until_ended
from tests.support.users import auth
from tests.support.waiting import eventually
from tests.support.wire import example, phase_update, post

START = datetime(2030, 1, 1, tzinfo=UTC)
POOL = {"capacity_cores": 8, "capacity_memory_gib": 32, "capacity_storage_gib": 100}
QUICK = {
    "prepare_estimates": dict.fromkeys(ROLES, 1.0),
    "release_estimates": dict.fromkeys(ROLES, 1.0),
    "planning_slack": 0,
    "mock_prepare_seconds": dict.fromkeys(ROLES, 0.0),
    "mock_release_seconds": dict.fromkeys(ROLES, 0.0),
    "poll_interval": 1,
}

Started = Callable[..., Any]


@pytest.fixture
def on_a_manual_clock(make_settings: Callable[..., Settings]) -> Started:
    """``async with on_a_manual_clock() as (as_user, clock)``: the app on a clock at START;
    ``as_user(name)`` is a client calling it as that user (None: with no credentials)."""

    @asynccontextmanager
    async def start() -> AsyncIterator[tuple[Callable[..., httpx.AsyncClient], ManualClock]]:
        clock = ManualClock(START)
        app = create_app(make_settings(**POOL, **QUICK), clock=clock)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)

            def as_user(name: str | None) -> httpx.AsyncClient:
                return httpx.AsyncClient(
                    transport=transport,
                    base_url="http://broker.test",
                    headers=auth(name) if name else None,
                )

            yield as_user, clock

    return start


def _run(cores: int, *, duration: str, run_seconds: int | None = None) -> dict[str, Any]:
    document: dict[str, Any] = example("direct-request.json")
    if run_seconds is not None:
        document["executable"]["environment"] = {"MOCK_RUN_SECONDS": str(run_seconds)}
    document["compute"] = {"cores": {"min": cores, "max": cores}, "memory": {"min": 2, "max": 2}}
    document["schedule"] = {"requested": {"duration": duration}}
    return document


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.split("/", maxsplit=1)[0].replace("Z", "+00:00"))


def _booked(session: dict[str, Any]) -> tuple[datetime, datetime]:
    """The session's booking as its own document says: preparing start to releasing end."""
    schedule = session["schedule"]
    releasing = schedule["releasing"]
    end = _instant(releasing["start"]) + parse_duration(releasing["duration"])
    return _instant(schedule["preparing"]["start"]), end


def _at(moment: datetime) -> str:
    return format_instant(moment)


async def test_held_and_used_are_exact_and_only_admins_may_read_them(
    on_a_manual_clock: Started,
) -> None:
    async with (
        on_a_manual_clock() as (as_user, clock),
        as_user("alice") as alice,
        as_user("bob") as bob,
        as_user("root") as root,
        as_user(None) as anonymous,
    ):
        # alice runs 2 cores at once: booked from now, its compute planned to start when
        # the others are ready (START + 1 s: estimates of 1 s) and available at START + 2 s;
        # the run exits after 900 s of its hour.
        created = await post(alice, "/direct", _run(2, duration="PT1H", run_seconds=900))
        assert created.status_code == 303, created.text
        early = created.headers["location"]
        clock.set(START + timedelta(seconds=2))
        await eventually(
            lambda: alice.get(early),
            lambda answer: answer.json()["phase"] == "RUNNING",
            what="the direct run running",
        )
        later = await _book_ahead(bob, cores=4, hours=2)

        clock.set(START + timedelta(seconds=902))
        ended = await until_ended(alice, early)
        assert ended["phase"] == "COMPLETED"
        clock.set(START + timedelta(minutes=30))

        early_start, _ = _booked(ended)
        bobs_session = (await bob.get(later)).json()
        later_start, later_end = _booked(bobs_session)
        assert early_start == START
        assert later_start > START + timedelta(seconds=902)

        window = {"from": _at(START), "to": _at(START + timedelta(hours=4))}
        answer = await root.get("/admin/calendar", params=window)
        assert answer.status_code == 200, answer.text
        calendar = answer.json()

        refused = await alice.get("/admin/calendar", params=window)
        assert refused.status_code == 403
        assert "administrators" in refused.json()["messages"][0]["message"]
        assert (await anonymous.get("/admin/calendar")).status_code == 401

    assert calendar["from"] == _at(START)
    assert calendar["to"] == _at(START + timedelta(hours=4))
    assert calendar["now"] == _at(START + timedelta(minutes=30))
    assert calendar["capacity"] == {"cores": 8, "memory_gib": 32, "storage_gib": 100}
    assert calendar["truncated"] is False
    by_session = {b["session"]: b for b in calendar["bookings"]}
    alices = by_session[ended["meta"]["uuid"]]
    assert alices["owner"] == "alice"
    assert alices["phase"] == "COMPLETED"
    assert alices["cores"] == 2
    assert alices["interactive"] is False
    # Held from its booking's start until it ended; used from its start to its release.
    two, ended_at = _at(START + timedelta(seconds=2)), _at(START + timedelta(seconds=902))
    assert alices["held"] == {"start": _at(START), "end": ended_at}
    assert alices["used"] == {"start": two, "end": ended_at}
    bobs = by_session[bobs_session["meta"]["uuid"]]
    assert (bobs["owner"], bobs["phase"], bobs["cores"]) == ("bob", "WAITING", 4)
    assert bobs["book_start"] == _at(later_start)
    assert bobs["book_end"] == _at(later_end)
    assert bobs["held"] == {"start": _at(later_start), "end": _at(later_end)}
    assert "used" not in bobs  # merely booked: its compute has not started
    # The rejected sibling offers of bob's set hold nothing and are not listed.
    assert len(calendar["bookings"]) == 2

    _series_and_totals_are_exact(calendar, later_start, later_end)


async def _book_ahead(client: httpx.AsyncClient, *, cores: int, hours: int) -> str:
    """Accept an offer of ``cores`` for an hour, ``hours`` after START; its URL."""
    request = _run(cores, duration="PT1H")
    request["schedule"]["requested"]["start"] = f"{_at(START + timedelta(hours=hours))}/PT0S"
    offered = await post(client, "/requests", request)
    assert offered.json()["result"] == "YES", offered.text
    url: str = offered.json()["offers"][0]["meta"]["url"]
    accepted = await post(client, url, phase_update("ACCEPTED"))
    assert accepted.status_code == 200, accepted.text
    return url


def _series_and_totals_are_exact(
    calendar: dict[str, Any], later_start: datetime, later_end: datetime
) -> None:
    """alice's 2 cores held from START, used from START + 2 s, both until START + 902 s;
    bob's 4 cores held over his booking, not used; a pool of 8 cores over 4 hours."""
    two, ended_at = _at(START + timedelta(seconds=2)), _at(START + timedelta(seconds=902))
    steps = [(s["at"], s["held"]["cores"], s["used"]["cores"]) for s in calendar["series"]]
    assert steps == [
        (_at(START), 2, 0),
        (two, 2, 2),
        (ended_at, 0, 0),
        (_at(later_start), 4, 0),
        (_at(later_end), 0, 0),
    ]
    held_seconds = 2 * 902 + 4 * (later_end - later_start).total_seconds()
    assert calendar["core_hours"] == {
        "pool": 32.0,
        "held": held_seconds / 3600,
        "used": 0.5,
    }
    assert calendar["utilisation"] == {
        "held": held_seconds / (8 * 4 * 3600),
        "used": 1800 / (8 * 4 * 3600),
    }


async def test_the_range_defaults_to_the_next_day_and_is_bounded(
    on_a_manual_clock: Started,
) -> None:
    async with on_a_manual_clock() as (as_user, _), as_user("root") as root:
        default = (await root.get("/admin/calendar")).json()
        reversed_ = await root.get(
            "/admin/calendar",
            params={"from": _at(START), "to": _at(START - timedelta(hours=1))},
        )
        too_long = await root.get(
            "/admin/calendar",
            params={"from": _at(START), "to": _at(START + timedelta(days=7, seconds=1))},
        )
        week = await root.get(
            "/admin/calendar",
            params={"from": _at(START), "to": _at(START + timedelta(days=7))},
        )
    assert (default["from"], default["to"]) == (_at(START), _at(START + timedelta(hours=24)))
    assert default["bookings"] == []
    assert default["series"] == [
        {
            "at": _at(START),
            "held": {"cores": 0, "memory_gib": 0, "storage_gib": 0},
            "used": {"cores": 0, "memory_gib": 0, "storage_gib": 0},
        }
    ]
    assert default["utilisation"] == {"held": 0.0, "used": 0.0}
    assert reversed_.status_code == 422
    assert "is not after from" in reversed_.json()["messages"][0]["message"]
    assert too_long.status_code == 422
    assert "at most P7D" in too_long.json()["messages"][0]["message"]
    assert week.status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"from": "9999-12-31T23:59:59Z"},
        {"to": "9999-12-31T23:59:59Z"},
        {"to": "0001-01-01T12:00:00Z"},
        {"from": "9999-12-25T00:00:00Z", "to": "9999-12-31T00:00:00Z"},
    ],
)
async def test_a_range_at_the_ends_of_the_calendar_is_refused_not_failed(
    on_a_manual_clock: Started, params: dict[str, str]
) -> None:
    # These answered 500 (OverflowError: date value out of range).
    async with on_a_manual_clock() as (as_user, _), as_user("root") as root:
        answer = await root.get("/admin/calendar", params=params)
    assert answer.status_code == 422
    assert "more than 100 years from now" in answer.json()["messages"][0]["message"]
