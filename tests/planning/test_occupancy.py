"""The pool's held and used capacity over a range, worked out from bookings alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from execbroker.model.capacity import Amounts
from execbroker.model.occupancy import PoolBooking
from execbroker.model.phases import SessionPhase
from execbroker.planning.occupancy import occupancy

T0 = datetime(2030, 1, 1, tzinfo=UTC)
POOL = Amounts(10, 100, 1000, 0)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _booking(
    phase: SessionPhase, cores: int, start: float, end: float, **more: object
) -> PoolBooking:
    values: dict[str, object] = {
        "uuid": uuid4(),
        "owner": "alice",
        "offer_set_uuid": None,
        "phase": phase,
        "start": _at(start),
        "end": _at(end),
        "amounts": Amounts(cores, 1, 1, 0),
        "holding": True,
        "modified": T0,
        **more,
    }
    return PoolBooking(**values)  # type: ignore[arg-type]


def test_offers_of_one_request_count_once_at_their_largest() -> None:
    request = uuid4()
    offers = [
        _booking(SessionPhase.OFFERED, 2, 0, 60, offer_set_uuid=request),
        _booking(SessionPhase.OFFERED, 4, 30, 90, offer_set_uuid=request),
    ]
    found = occupancy(offers, start=T0, end=_at(100), now=T0, capacity=POOL)
    assert [(s.at, s.held.cores) for s in found.steps] == [
        (_at(0), 2),
        (_at(30), 4),
        (_at(90), 0),
    ]
    assert found.held_core_seconds == (2 * 30 + 4 * 60) * 60
    assert found.used_core_seconds == 0


def test_an_ended_session_held_until_it_ended_and_a_running_one_is_used_to_its_end() -> None:
    ended = _booking(
        SessionPhase.COMPLETED,
        3,
        0,
        60,
        holding=False,
        modified=_at(20),
        compute_started=_at(1),
        compute_ended=_at(20),
    )
    running = _booking(SessionPhase.RUNNING, 5, 10, 70, compute_started=_at(12))
    cancelled_early = _booking(SessionPhase.CANCELLED, 8, 30, 60, holding=False, modified=_at(5))
    found = occupancy(
        [ended, running, cancelled_early], start=T0, end=_at(100), now=_at(40), capacity=POOL
    )
    spans = {b.booking.uuid: (b.held, b.used) for b in found.bookings}
    assert spans[cancelled_early.uuid] == (None, None)
    held, used = spans[ended.uuid]
    assert (held and (held.start, held.end)) == (_at(0), _at(20))
    assert (used and (used.start, used.end)) == (_at(1), _at(20))
    held, used = spans[running.uuid]
    assert (used and (used.start, used.end)) == (_at(12), _at(70))
    assert found.held_core_seconds == (3 * 20 + 5 * 60) * 60
    assert found.used_core_seconds == (3 * 19 + 5 * 58) * 60
    assert found.held_utilisation == found.held_core_seconds / (10 * 100 * 60)


def test_only_the_range_counts() -> None:
    long = _booking(SessionPhase.WAITING, 4, -60, 160)
    found = occupancy([long], start=T0, end=_at(100), now=T0, capacity=POOL)
    assert [(s.at, s.held.cores) for s in found.steps] == [(T0, 4)]
    assert found.held_utilisation == 0.4
