"""Accepted sessions that may move earlier, and their moves (issue 19).

Mechanical: which sessions wait and may move (:func:`waiting_to_move`), and writing one move
(:func:`move_earlier`), guarded in SQL so that a session the engine took up meanwhile, or
that began or ended, is left as it is. The decisions are the backfill's
(:mod:`execbroker.services.backfill`), made inside a locked booking.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from execbroker.model.capacity import Amounts
from execbroker.model.moves import WaitingSession
from execbroker.model.phases import ComponentPhase, SessionPhase
from execbroker.model.wire import MessageItem
from execbroker.storage.queries import phase_in
from execbroker.storage.rows import MessageTarget, insert_messages
from execbroker.storage.tables import UTCDateTime, components, sessions

__all__ = ["any_waiting_to_move", "move_earlier", "waiting_to_move"]

_WAITING_PHASES = (SessionPhase.ACCEPTED, SessionPhase.WAITING)
_NOT_BEGUN = (ComponentPhase.INITIALIZING, ComponentPhase.WAITING)


def _unclaimed(now: Any) -> sa.ColumnElement[bool]:
    return sa.or_(sessions.c.claimed_until.is_(None), sessions.c.claimed_until < now)


def _waiting(now: Any) -> list[sa.ColumnElement[bool]]:
    """Accepted, may move, has not begun (its booking, and so every component's preparing,
    starts after ``now``), is not being ended, could start earlier than it does, and no
    engine holds it.
    """
    begun = (
        sa.select(components.c.uuid)
        .where(
            components.c.session_uuid == sessions.c.uuid,
            sa.or_(
                components.c.phase.not_in([p.value for p in _NOT_BEGUN]),
                components.c.started_at.is_not(None),
            ),
        )
        .exists()
    )
    return [
        phase_in(sessions.c.phase, _WAITING_PHASES),
        sessions.c.book_start > now,
        sessions.c.moves_earlier,
        sessions.c.ending.is_(None),
        sa.not_(sessions.c.releasing),
        sessions.c.earliest_start.is_not(None),
        sessions.c.available_start > sessions.c.earliest_start,
        _unclaimed(now),
        sa.not_(begun),
    ]


_NOW = sa.bindparam("now", type_=UTCDateTime())
_ANY = sa.select(sessions.c.uuid).where(*_waiting(_NOW)).limit(1)
_LIST = (
    sa.select(
        sessions.c.uuid,
        sessions.c.owner,
        sessions.c.offer_set_uuid,
        sa.func.coalesce(sessions.c.accepted_at, sessions.c.created).label("accepted"),
        sessions.c.book_start,
        sessions.c.book_end,
        sessions.c.prepare_start,
        sessions.c.available_start,
        sessions.c.earliest_start,
        sa.func.coalesce(sessions.c.promised_start, sessions.c.available_start).label("promised"),
        sessions.c.cores,
        sessions.c.memory_gib,
        sessions.c.storage_gib,
        sessions.c.interactive,
    )
    .where(*_waiting(_NOW))
    .order_by(sa.func.coalesce(sessions.c.accepted_at, sessions.c.created), sessions.c.uuid)
    .limit(sa.bindparam("limit"))
)


def any_waiting_to_move(connection: Connection, *, now: datetime) -> bool:
    """Whether any session waits that :func:`waiting_to_move` would list."""
    return connection.execute(_ANY, {"now": now}).first() is not None


def waiting_to_move(connection: Connection, *, now: datetime, limit: int) -> list[WaitingSession]:
    """Up to ``limit`` accepted sessions that may move earlier and have not begun, first
    accepted first (``coalesce`` keeps its first column's type: the times come back aware).
    """
    rows = connection.execute(_LIST, {"now": now, "limit": limit}).all()
    return [
        WaitingSession(
            uuid=UUID(row.uuid),
            owner=row.owner,
            offer_set_uuid=UUID(row.offer_set_uuid) if row.offer_set_uuid else None,
            accepted_at=row.accepted,
            book_start=row.book_start,
            book_end=row.book_end,
            prepare_start=row.prepare_start,
            available_start=row.available_start,
            earliest_start=row.earliest_start,
            promised_start=row.promised,
            amounts=Amounts(row.cores, row.memory_gib, row.storage_gib, row.interactive),
        )
        for row in rows
    ]


def move_earlier(
    connection: Connection,
    session: WaitingSession,
    *,
    start: datetime,
    now: datetime,
    note: MessageItem,
) -> bool:
    """Start ``session`` at ``start`` instead: its booking, its schedule and each of its
    components' schedules move together (durations and amounts stay); the engine looks at
    it again at once (``next_due``), and the revision is bumped. False, having written
    nothing, when it is no longer where it was read, or began, or an engine holds it.
    """
    shift = start - session.available_start
    moved = connection.execute(
        sessions.update()
        .where(
            sessions.c.uuid == str(session.uuid),
            sessions.c.book_start == session.book_start,
            *_waiting(now),
        )
        .values(
            book_start=session.book_start + shift,
            book_end=session.book_end + shift,
            prepare_start=session.prepare_start + shift,
            available_start=start,
            revision=sessions.c.revision + 1,
            next_due=now,
            modified=now,
        )
    )
    if moved.rowcount != 1:
        return False
    parts = connection.execute(
        sa.select(
            components.c.uuid, components.c.prepare_start, components.c.available_start
        ).where(components.c.session_uuid == str(session.uuid))
    ).all()
    if parts:
        connection.execute(
            components.update()
            .where(components.c.uuid == sa.bindparam("m_uuid"))
            .values(
                prepare_start=sa.bindparam("m_prepare", type_=UTCDateTime()),
                available_start=sa.bindparam("m_available", type_=UTCDateTime()),
                # Looked at again: the engine works out when each waits for now.
                due=None,
                modified=now,
            ),
            [
                {
                    "m_uuid": part.uuid,
                    "m_prepare": part.prepare_start + shift,
                    "m_available": part.available_start + shift,
                }
                for part in parts
            ],
        )
    insert_messages(
        connection,
        MessageTarget(
            session.uuid, session_uuid=session.uuid, offer_set_uuid=session.offer_set_uuid
        ),
        [note],
    )
    return True
