"""An accepted session that has not begun, as the backfill sees it: where it is booked, and
how far its request lets it move earlier.

Plain values: storage reads them (:mod:`execbroker.storage.moves`), the planner finds each
one's earliest start (:mod:`execbroker.planning.backfill`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from execbroker.model.capacity import Amounts

__all__ = ["WaitingSession"]


@dataclass(frozen=True)
class WaitingSession:
    """An accepted session that may move earlier and has not begun preparing.

    It books ``[book_start, book_end)`` for ``amounts``; its run starts at
    ``available_start``, which may move to any instant from ``earliest_start`` (the start
    interval's beginning) on, and never later than it is now (no later than
    ``promised_start``, the start it was offered).
    """

    uuid: UUID
    owner: str
    offer_set_uuid: UUID | None
    accepted_at: datetime
    book_start: datetime
    book_end: datetime
    prepare_start: datetime
    available_start: datetime
    earliest_start: datetime
    promised_start: datetime
    amounts: Amounts

    @property
    def lead(self) -> timedelta:
        """How long before its start it begins preparing (it keeps that when it moves)."""
        return self.available_start - self.book_start

    @property
    def span(self) -> timedelta:
        """How long its booking is (it keeps that when it moves)."""
        return self.book_end - self.book_start
