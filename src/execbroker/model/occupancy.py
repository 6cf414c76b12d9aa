"""A session's booking as the operator's calendar shows it: what it booked, and when the
platform really ran it.

Plain values that storage reads (:func:`execbroker.storage.queries.pool_bookings`) and the
planner turns into the pool's held and used capacity over a range
(:mod:`execbroker.planning.occupancy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from execbroker.model.capacity import Amounts
from execbroker.model.phases import SessionPhase

__all__ = ["PoolBooking"]


@dataclass(frozen=True, kw_only=True)
class PoolBooking:
    """One booking of the pool: a live offer, or a session accepted (or run directly).

    ``start``/``end`` are the booking (``book_start``/``book_end``). ``holding``: it holds its
    booking now (a live offer, an accepted session not yet ended, a cancelled one still
    releasing); otherwise it ended at ``modified`` and held nothing from then on.
    ``compute_started``: when the broker asked the platform to start the session's compute
    (None: never); ``compute_ended``: when that compute's release finished (None: not yet).
    """

    uuid: UUID
    owner: str
    offer_set_uuid: UUID | None
    phase: SessionPhase
    start: datetime
    end: datetime
    amounts: Amounts
    holding: bool
    modified: datetime
    compute_started: datetime | None = None
    compute_ended: datetime | None = None
