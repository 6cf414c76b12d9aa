"""The calendar's and the quotas' SQL: what is held over a window, and what an owner has.

Facts only: sums, lists and counts. What they allow (a booking that fits, a quota not yet
used up) is decided by the services (:mod:`execbroker.services.admission`). The checks an
optimistic booking settles with (:data:`CHECKS`) assert again, under the pool's lock, the
facts such a decision relied on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from execbroker.model.capacity import Amounts, Hold
from execbroker.model.occupancy import PoolBooking
from execbroker.model.phases import (
    HOLDING_SESSION_PHASES,
    TERMINAL_COMPONENT_PHASES,
    ComponentPhase,
    SessionPhase,
)
from execbroker.model.records import ComponentRole
from execbroker.storage.tables import UTCDateTime, components, sessions

__all__ = [
    "CHECKS",
    "HOLDING_PHASES",
    "HOLD_TOTAL_PG",
    "count_active_sessions",
    "count_live_offers",
    "hold_total",
    "holds",
    "phase_in",
    "pool_bookings",
    "window",
]

# Sorted, so that the statements built from it are the same in every process.
HOLDING_PHASES = sorted(HOLDING_SESSION_PHASES)


def phase_in(phase: sa.ColumnElement[str], phases: Iterable[SessionPhase]) -> Any:
    """``phase IN ('A', 'B', …)`` with the phases written into the SQL, not bound: so that
    PostgreSQL's planner can see that a query only wants rows its partial indexes hold.
    The phases are this module's own constants, never user input.
    """
    return phase.in_([sa.literal_column(f"'{p.value}'") for p in sorted(phases)])


def _holding_clause(phase: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    return sa.and_(
        sessions.c.book_end > sa.bindparam("w_start", type_=UTCDateTime()),
        # A booking starting before the window's end and no longer than the longest booking
        # ends before this: it bounds the index range from above, too.
        sessions.c.book_end < sa.bindparam("w_end_bound", type_=UTCDateTime()),
        sessions.c.book_start < sa.bindparam("w_end", type_=UTCDateTime()),
        sessions.c.uuid != sa.bindparam("w_exclude"),
        sa.or_(
            phase_in(phase, HOLDING_PHASES),
            sa.and_(
                phase_in(phase, [SessionPhase.OFFERED]),
                sessions.c.expires > sa.bindparam("w_now", type_=UTCDateTime()),
            ),
            # Cancelled, and its components not yet released.
            sessions.c.releasing,
        ),
    )


def _interactive() -> Any:
    """A booking's interactive sessions as the window's account counts them: every booking's
    when all share one account (``w_every``), else only those of ``w_account``'s bookings.
    """
    return sa.case(
        (
            sa.or_(
                sa.bindparam("w_every", type_=sa.Boolean()),
                sessions.c.owner == sa.bindparam("w_account"),
            ),
            sessions.c.interactive,
        ),
        else_=0,
    )


def _live_sqlite(phase: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """SQLite: the condition of the partial index of live bookings (migration 0016), written
    as the index writes it: SQLite uses a partial index only for a query that contains its
    condition word for word. It adds nothing to what :func:`_holding_clause` selects.
    """
    live = [*HOLDING_SESSION_PHASES, SessionPhase.OFFERED]
    return sa.or_(phase_in(phase, live), sessions.c.releasing)


def _hold_queries(*, sqlite: bool) -> tuple[sa.Select[Any], sa.Select[Any]]:
    if sqlite:
        # ``phase || ''`` on purpose: no phase index serves it, so SQLite ranges over the
        # partial covering index of live bookings (bounded on both sides by the window)
        # instead of walking the phase index, which visits every live booking whatever the
        # window.
        phase = sessions.c.phase.concat(sa.literal_column("''"))
        holding = sa.and_(_holding_clause(phase), _live_sqlite(phase))
    else:
        # The plain phase, which lets PostgreSQL's planner use the partial index of live
        # bookings (migration 0006).
        holding = _holding_clause(sessions.c.phase)
    listed = sa.select(
        sessions.c.uuid,
        sessions.c.offer_set_uuid,
        sessions.c.phase,
        sessions.c.book_start,
        sessions.c.book_end,
        sessions.c.cores,
        sessions.c.memory_gib,
        sessions.c.storage_gib,
        _interactive().label("interactive"),
    ).where(holding)
    total = sa.select(
        sa.func.coalesce(sa.func.sum(sessions.c.cores), 0),
        sa.func.coalesce(sa.func.sum(sessions.c.memory_gib), 0),
        sa.func.coalesce(sa.func.sum(sessions.c.storage_gib), 0),
        sa.func.coalesce(sa.func.sum(_interactive()), 0),
    ).where(holding)
    return listed, total


# Built once, with bound parameters: constructing these per call cost more than running them.
_HOLDS_SQLITE, _HOLD_TOTAL_SQLITE = _hold_queries(sqlite=True)
_HOLDS_PG, HOLD_TOTAL_PG = _hold_queries(sqlite=False)


def _room_check() -> sa.ColumnElement[bool]:
    """Everyone else's live bookings over the window still leave room for the largest the
    request may use: their sum does, or else (read only then) their sum with the offers of
    one set counted once, at their largest. Either is an upper bound of what is held at
    any instant in the window. Interactive sessions count as the window's account counts
    them (:func:`_interactive`).
    """

    def fits(cores: Any, memory: Any, storage: Any, interactive: Any) -> sa.ColumnElement[bool]:
        return sa.and_(
            sa.func.coalesce(cores, 0) + sa.bindparam("largest_cores")
            <= sa.bindparam("capacity_cores"),
            sa.func.coalesce(memory, 0) + sa.bindparam("largest_memory")
            <= sa.bindparam("capacity_memory"),
            sa.func.coalesce(storage, 0) + sa.bindparam("largest_storage")
            <= sa.bindparam("capacity_storage"),
            sa.func.coalesce(interactive, 0) + sa.bindparam("largest_interactive")
            <= sa.bindparam("capacity_interactive"),
        )

    others = sa.and_(
        _holding_clause(sessions.c.phase),
        sessions.c.uuid != sa.func.all(sa.bindparam("w_own", type_=ARRAY(sa.String()))),
    )
    summed = sa.select(
        fits(
            sa.func.sum(sessions.c.cores),
            sa.func.sum(sessions.c.memory_gib),
            sa.func.sum(sessions.c.storage_gib),
            sa.func.sum(_interactive()),
        )
    ).where(others)
    group = sa.case(
        (
            sa.and_(
                sessions.c.phase == SessionPhase.OFFERED.value,
                sessions.c.offer_set_uuid.is_not(None),
            ),
            sessions.c.offer_set_uuid,
        ),
        else_=sessions.c.uuid,
    )
    largest_of_each = (
        sa.select(
            sa.func.max(sessions.c.cores).label("cores"),
            sa.func.max(sessions.c.memory_gib).label("memory_gib"),
            sa.func.max(sessions.c.storage_gib).label("storage_gib"),
            sa.func.max(_interactive()).label("interactive"),
        )
        .where(others)
        .group_by(group)
        .subquery()
    )
    grouped = sa.select(
        fits(
            sa.func.sum(largest_of_each.c.cores),
            sa.func.sum(largest_of_each.c.memory_gib),
            sa.func.sum(largest_of_each.c.storage_gib),
            sa.func.sum(largest_of_each.c.interactive),
        )
    )
    # Scalar subqueries: PostgreSQL runs the second only if the first is false.
    return sa.or_(summed.scalar_subquery(), grouped.scalar_subquery())


# What the quotas count, read while booking and checked again when settling.
_LIVE_OFFERS = sa.select(sa.func.count()).where(
    sessions.c.owner == sa.bindparam("lo_owner"),
    sessions.c.phase == SessionPhase.OFFERED.value,
    sessions.c.expires > sa.bindparam("lo_now", type_=UTCDateTime()),
)
_ACTIVE = sa.select(sa.func.count()).where(
    sessions.c.owner == sa.bindparam("aq_owner"), phase_in(sessions.c.phase, HOLDING_PHASES)
)


# The checks an optimistic booking settles with (PostgreSQL), by name; their parameters
# are named apart, so any of them go together in one statement.
CHECKS: dict[str, Any] = {
    "room": sa.func.execbroker_require(_room_check(), "room in the pool"),
    "live_offers": sa.func.execbroker_require(
        _LIVE_OFFERS.scalar_subquery() <= sa.bindparam("lo_limit"), "the live-offers quota"
    ),
    "active": sa.func.execbroker_require(
        _ACTIVE.scalar_subquery() <= sa.bindparam("aq_limit"), "the active-sessions quota"
    ),
}
_NOBODY = "00000000-0000-0000-0000-000000000000"


def window(
    start: datetime,
    end: datetime,
    now: datetime,
    exclude: UUID | None,
    longest: timedelta,
    *,
    account: str | None = None,
) -> dict[str, Any]:
    """The parameters of a window query (and of the ``room`` check). ``account``: whose
    interactive sessions count (an owner's, in per-user mode); None: everyone's, as they
    share one account.
    """
    return {
        "w_start": start,
        "w_end": end,
        "w_end_bound": end + longest,
        "w_now": now,
        "w_exclude": str(exclude) if exclude else _NOBODY,
        "w_every": account is None,
        "w_account": account or "",
    }


def hold_total(
    connection: Connection,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    exclude: UUID | None,
    longest: timedelta,
    account: str | None = None,
) -> Amounts:
    """The sum of every hold overlapping ``[start, end)``: an upper bound of what is held
    at any instant in it, counted by the database without loading the holds (interactive
    sessions: ``account``'s, see :func:`window`).
    """
    query = _HOLD_TOTAL_SQLITE if connection.dialect.name == "sqlite" else HOLD_TOTAL_PG
    parameters = window(start, end, now, exclude, longest, account=account)
    row = connection.execute(query, parameters).one()
    return Amounts(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def holds(
    connection: Connection,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    exclude: UUID | None,
    longest: timedelta,
    account: str | None = None,
) -> list[Hold]:
    """Bookings overlapping ``[start, end)``: live offers (grouped by offer set, as they are
    alternatives) and accepted sessions that have not ended (interactive sessions:
    ``account``'s, see :func:`window`).
    """
    query = _HOLDS_SQLITE if connection.dialect.name == "sqlite" else _HOLDS_PG
    parameters = window(start, end, now, exclude, longest, account=account)
    rows = (connection.execute(query, parameters)).all()
    return [
        Hold(
            group=row.offer_set_uuid
            if row.phase == SessionPhase.OFFERED.value and row.offer_set_uuid
            else row.uuid,
            start=row.book_start,
            end=row.book_end,
            amounts=Amounts(row.cores, row.memory_gib, row.storage_gib, row.interactive),
            offered=row.phase == SessionPhase.OFFERED.value,
        )
        for row in rows
    ]


def count_live_offers(connection: Connection, owner: str, *, now: datetime) -> int:
    """How many offers of ``owner``'s are unexpired at ``now``."""
    return int(connection.execute(_LIVE_OFFERS, {"lo_owner": owner, "lo_now": now}).scalar_one())


def count_active_sessions(connection: Connection, owner: str) -> int:
    """Sessions of ``owner``'s accepted and not yet ended."""
    return int(connection.execute(_ACTIVE, {"aq_owner": owner}).scalar_one())


# Phases of sessions that were accepted (or run directly) and have ended: they held their
# booking until they ended.
_ENDED_BOOKINGS = (SessionPhase.COMPLETED, SessionPhase.FAILED, SessionPhase.CANCELLED)
_compute = components.alias("compute")
_POOL_BOOKINGS = (
    sa.select(
        sessions.c.uuid,
        sessions.c.owner,
        sessions.c.offer_set_uuid,
        sessions.c.phase,
        sessions.c.expires,
        sessions.c.releasing,
        sessions.c.modified,
        sessions.c.book_start,
        sessions.c.book_end,
        sessions.c.cores,
        sessions.c.memory_gib,
        sessions.c.storage_gib,
        sessions.c.interactive,
        _compute.c.started_at.label("compute_started"),
        _compute.c.phase.label("compute_phase"),
        _compute.c.modified.label("compute_modified"),
    )
    .select_from(
        sessions.outerjoin(
            _compute,
            sa.and_(
                _compute.c.session_uuid == sessions.c.uuid,
                _compute.c.role == ComponentRole.COMPUTE.value,
            ),
        )
    )
    .where(
        sessions.c.book_end > sa.bindparam("p_start", type_=UTCDateTime()),
        sessions.c.book_end < sa.bindparam("p_end_bound", type_=UTCDateTime()),
        sessions.c.book_start < sa.bindparam("p_end", type_=UTCDateTime()),
        sa.or_(
            phase_in(sessions.c.phase, HOLDING_PHASES),
            sa.and_(
                phase_in(sessions.c.phase, [SessionPhase.OFFERED]),
                sessions.c.expires > sa.bindparam("p_now", type_=UTCDateTime()),
            ),
            sessions.c.releasing,
            # Ended inside the range: it held its booking until then.
            sa.and_(
                phase_in(sessions.c.phase, _ENDED_BOOKINGS),
                sessions.c.modified > sa.bindparam("p_start", type_=UTCDateTime()),
            ),
        ),
    )
    .order_by(sessions.c.book_start, sessions.c.uuid)
    .limit(sa.bindparam("p_limit"))
)


def pool_bookings(
    connection: Connection,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    longest: timedelta,
    limit: int,
) -> list[PoolBooking]:
    """The bookings that held capacity of the pool at some instant of ``[start, end)``, by
    start: live offers, sessions accepted and not ended, and sessions that ended inside the
    range (rejected and expired offers are left out); at most ``limit``.
    """
    rows = connection.execute(
        _POOL_BOOKINGS,
        {
            "p_start": start,
            "p_end": end,
            "p_end_bound": end + longest,
            "p_now": now,
            "p_limit": limit,
        },
    ).all()
    found: list[PoolBooking] = []
    for row in rows:
        phase = SessionPhase(row.phase)
        offered = phase is SessionPhase.OFFERED
        compute_phase = ComponentPhase(row.compute_phase) if row.compute_phase else None
        found.append(
            PoolBooking(
                uuid=UUID(row.uuid),
                owner=row.owner,
                offer_set_uuid=UUID(row.offer_set_uuid) if row.offer_set_uuid else None,
                phase=phase,
                start=row.book_start,
                end=row.book_end,
                amounts=Amounts(row.cores, row.memory_gib, row.storage_gib, row.interactive),
                holding=phase in HOLDING_SESSION_PHASES
                or bool(row.releasing)
                or (offered and row.expires is not None and row.expires > now),
                modified=row.modified,
                compute_started=None if offered else row.compute_started,
                compute_ended=row.compute_modified
                if compute_phase in TERMINAL_COMPONENT_PHASES and row.compute_started
                else None,
            )
        )
    return found
