"""Sessions and their components: reading them, and the changes a user asks for.

Mechanical: records in, records out. Changes are guarded in SQL (``UPDATE … WHERE phase IN
(…)``): what they return says whether this caller won. Every query is filtered by owner.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from execbroker.model.phases import SessionPhase
from execbroker.model.records import ComponentRecord, SessionRecord
from execbroker.model.wire import MessageItem
from execbroker.storage.database import Database
from execbroker.storage.queries import HOLDING_PHASES
from execbroker.storage.rows import (
    MessageTarget,
    component_from_row,
    insert_messages,
    load_messages,
    load_session,
    owned_by,
    session_from_row,
)
from execbroker.storage.tables import components, messages, sessions

__all__ = ["SessionStore", "extend_run", "listing_query"]


# A listing stamp of at most this many rows is read in the event loop's thread on SQLite.
_GLANCE_ROWS = 100
# The hottest glances, as SQLite runs them (Database.glance_sql): a session's stamp, and the
# stamp of a listing newest first (along the indexes on (owner, created, uuid) and
# (created, uuid), as listing_query reads).
_STAMP = "SELECT revision, phase FROM sessions WHERE uuid = ?"
_OWNED_STAMP = _STAMP + " AND owner = ?"
_LISTING_STAMP = "SELECT uuid, revision FROM sessions ORDER BY created DESC, uuid DESC LIMIT ?"
_OWNED_LISTING_STAMP = (
    "SELECT uuid, revision FROM sessions WHERE owner = ? ORDER BY created DESC, uuid DESC LIMIT ?"
)


class SessionStore:
    """Sessions and components as users see them, and a user's cancel."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, uuid: UUID, *, owner: str | None) -> SessionRecord | None:
        """The session with its components and messages, if ``owner`` (None: anyone) has it."""
        return await self._db.run_read(functools.partial(load_session, uuid=uuid, owner=owner))

    async def stamp(self, uuid: UUID, *, owner: str | None) -> tuple[int, SessionPhase] | None:
        """The session's revision and phase, if ``owner`` (None: anyone) has it: whether a
        document rendered from an earlier read is still current (every change to a session,
        its components or its messages bumps its revision). A glance, by primary key.
        """
        if owner is None:
            rows = self._db.glance_sql(_STAMP, (str(uuid),))
        else:
            rows = self._db.glance_sql(_OWNED_STAMP, (str(uuid), owner))
        if rows is None:
            query = sa.select(sessions.c.revision, sessions.c.phase).where(
                sessions.c.uuid == str(uuid), *owned_by(sessions, owner)
            )

            def read(connection: Connection) -> list[tuple[Any, ...]]:
                return [tuple(row) for row in connection.execute(query)]

            rows = await self._db.run_read(read)
        return (rows[0][0], SessionPhase(rows[0][1])) if rows else None

    async def listing(
        self,
        *,
        owner: str | None,
        phases: Sequence[SessionPhase],
        after: datetime | None,
        last: int | None,
    ) -> list[SessionRecord]:
        """Newest first; without components or messages (a listing, not a reading)."""
        query = listing_query(owner=owner, phases=phases, after=after, last=last)

        def read(connection: Connection) -> list[SessionRecord]:
            return [session_from_row(row, [], {}) for row in connection.execute(query)]

        return await self._db.run_read(read)

    async def listing_stamp(
        self,
        *,
        owner: str | None,
        phases: Sequence[SessionPhase],
        after: datetime | None,
        last: int | None,
    ) -> tuple[tuple[str, int], ...]:
        """The uuid and revision of each session :meth:`listing` would return, in its order:
        whether a listing rendered before is still current. A glance when it is short and
        unfiltered (the fast lane's listings).
        """
        if not phases and after is None and last is not None and last <= _GLANCE_ROWS:
            if owner is None:
                rows = self._db.glance_sql(_LISTING_STAMP, (last,))
            else:
                rows = self._db.glance_sql(_OWNED_LISTING_STAMP, (owner, last))
            if rows is not None:
                return tuple(rows)  # sqlite3 rows are (uuid, revision) tuples already
        query = listing_query(owner=owner, phases=phases, after=after, last=last)
        query = query.with_only_columns(sessions.c.uuid, sessions.c.revision)

        def read(connection: Connection) -> tuple[tuple[str, int], ...]:
            return tuple((row[0], row[1]) for row in connection.execute(query))

        return await self._db.run_read(read)

    async def find_component(self, uuid: UUID, *, owner: str | None) -> ComponentRecord | None:
        """The component with its messages, if ``owner`` (None: anyone) has it."""

        def read(connection: Connection) -> ComponentRecord | None:
            row = connection.execute(
                sa.select(components).where(
                    components.c.uuid == str(uuid), *owned_by(components, owner)
                )
            ).one_or_none()
            if row is None:
                return None
            found = load_messages(connection, messages.c.subject_uuid == str(uuid))
            return component_from_row(row, found.get(str(uuid), []))

        return await self._db.run_read(read)

    async def count_by_phase(self) -> dict[str, int]:
        """How many sessions (offers included) are in each phase."""

        def read(connection: Connection) -> dict[str, int]:
            rows = connection.execute(
                sa.select(sessions.c.phase, sa.func.count()).group_by(sessions.c.phase)
            )
            return {str(phase): int(count) for phase, count in rows}

        return await self._db.run_read(read)

    async def mark_ending(
        self,
        uuid: UUID,
        *,
        owner: str,
        from_phases: Iterable[SessionPhase],
        ending: SessionPhase,
        phase: SessionPhase,
        releasing: bool,
        now: datetime,
        note: MessageItem,
    ) -> bool:
        """Record that the run must end (a user's cancel): the engine does the releasing.
        ``releasing``: the session's phase is final, but its booking holds until the engine
        has released its components. False when the session was not in one of
        ``from_phases``.

        Bumps the revision, so that an engine pass that read the session before this does
        not write back its older view; the first ending decided stays.
        """

        def write(connection: Connection) -> bool:
            moved = connection.execute(
                sessions.update()
                .where(
                    sessions.c.uuid == str(uuid),
                    sessions.c.owner == owner,
                    sessions.c.phase.in_([p.value for p in from_phases]),
                )
                .values(
                    ending=sa.func.coalesce(sessions.c.ending, ending.value),
                    phase=phase.value,
                    releasing=releasing,
                    revision=sessions.c.revision + 1,
                    next_due=now,
                    modified=now,
                )
                .returning(sessions.c.offer_set_uuid)
            )
            row = moved.one_or_none()
            if row is None:
                return False
            offer_set = UUID(row.offer_set_uuid) if row.offer_set_uuid else None
            insert_messages(
                connection,
                MessageTarget(uuid, session_uuid=uuid, offer_set_uuid=offer_set),
                [note],
            )
            return True

        return await self._db.run_write(write)


def listing_query(
    *, owner: str | None, phases: Sequence[SessionPhase], after: datetime | None, last: int | None
) -> sa.Select[Any]:
    """The sessions of a listing, newest first: read backwards along the index on
    ``(owner, created, uuid)`` (``(created, uuid)`` for everyone's), never sorted.
    """
    query = sa.select(sessions).where(*owned_by(sessions, owner))
    if phases:
        query = query.where(sessions.c.phase.in_([p.value for p in phases]))
    if after is not None:
        query = query.where(sessions.c.created > after)
    return query.order_by(sessions.c.created.desc(), sessions.c.uuid.desc()).limit(last or 1000)


def extend_run(
    connection: Connection,
    session: SessionRecord,
    *,
    delta: timedelta,
    costs: list[dict[str, Any]],
    specs: dict[UUID, dict[str, Any]],
    now: datetime,
    note: MessageItem,
) -> bool:
    """Lengthen the run by ``delta``: the booking, the session's and every component's
    available time, the session's ``costs`` and the components' ``specs`` (their costs
    for the longer run); False when the session left the phases it was read in. Run inside
    a booking (:meth:`Booking.extend`).
    """
    moved = connection.execute(
        sessions.update()
        .where(
            sessions.c.uuid == str(session.uuid),
            sessions.c.phase.in_([p.value for p in HOLDING_PHASES]),
            sessions.c.book_end == session.schedule.release_end,
        )
        .values(
            available_seconds=sessions.c.available_seconds + delta.total_seconds(),
            book_end=session.schedule.release_end + delta,
            costs=costs,
            revision=sessions.c.revision + 1,
            next_due=now,
            modified=now,
        )
    )
    if moved.rowcount != 1:
        return False
    connection.execute(
        components.update()
        .where(components.c.session_uuid == str(session.uuid))
        .values(
            available_seconds=components.c.available_seconds + delta.total_seconds(),
            modified=now,
        )
    )
    for uuid, spec in specs.items():
        connection.execute(
            components.update().where(components.c.uuid == str(uuid)).values(spec=spec)
        )
    insert_messages(
        connection,
        MessageTarget(
            session.uuid, session_uuid=session.uuid, offer_set_uuid=session.offer_set_uuid
        ),
        [note],
    )
    return True
