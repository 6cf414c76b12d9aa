"""What a user has stored, and deleting what ended long ago (the retention job's queries).

An offer set is deleted as a whole, with its offers (sessions), their components and every
message of any of them, once the set and all its offers ended and none changed since the
cut-off; a direct session (one without an offer set) likewise. A session still under way,
or one whose release is still to be done, keeps its offer set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from execbroker.model.phases import TERMINAL_SESSION_PHASES
from execbroker.storage.database import Database
from execbroker.storage.tables import components, messages, offer_sets, sessions

__all__ = ["Purged", "purge_ended", "stored_records"]

_ENDED = sorted(phase.value for phase in TERMINAL_SESSION_PHASES)


@dataclass(frozen=True, slots=True)
class Purged:
    """What one retention pass deleted."""

    offer_sets: int = 0
    sessions: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(self.offer_sets + other.offer_sets, self.sessions + other.sessions)


async def stored_records(database: Database, owner: str) -> int:
    """How many offer sets (of any result) and direct sessions ``owner`` has stored."""
    sets = sa.select(sa.func.count()).select_from(offer_sets).where(offer_sets.c.owner == owner)
    direct = (
        sa.select(sa.func.count())
        .select_from(sessions)
        .where(sessions.c.owner == owner, sessions.c.offer_set_uuid.is_(None))
    )

    def read(connection: Connection) -> int:
        return int(connection.execute(sets).scalar_one() + connection.execute(direct).scalar_one())

    return await database.run_read(read)


def _kept(before: datetime) -> sa.ColumnElement[bool]:
    """Sessions that must stay: not ended, ended after ``before``, or with work still due."""
    return sa.or_(
        sessions.c.phase.not_in(_ENDED),
        sessions.c.modified >= before,
        sessions.c.next_due.is_not(None),
        sessions.c.releasing,
    )


async def purge_ended(database: Database, *, before: datetime, batch: int = 500) -> Purged:
    """Delete offer sets and direct sessions that ended before ``before``, ``batch`` at a
    time (short write transactions), until none is left; how many of each went.
    """
    total = Purged()
    while True:
        async with database.write() as connection:
            done = await _purge_batch(connection, before=before, batch=batch)
        total += done
        if done.offer_sets < batch and done.sessions < batch:
            return total


async def _purge_batch(connection: AsyncConnection, *, before: datetime, batch: int) -> Purged:
    live_offer = sa.exists().where(sessions.c.offer_set_uuid == offer_sets.c.uuid, _kept(before))
    set_uuids = list(
        (
            await connection.execute(
                sa.select(offer_sets.c.uuid)
                .where(offer_sets.c.modified < before, ~live_offer)
                .limit(batch)
            )
        ).scalars()
    )
    direct_uuids = list(
        (
            await connection.execute(
                sa.select(sessions.c.uuid)
                .where(sessions.c.offer_set_uuid.is_(None), ~_kept(before))
                .limit(batch)
            )
        ).scalars()
    )
    offer_uuids = list(
        (
            await connection.execute(
                sa.select(sessions.c.uuid).where(sessions.c.offer_set_uuid.in_(set_uuids))
            )
        ).scalars()
    )
    session_uuids = direct_uuids + offer_uuids
    component_uuids = list(
        (
            await connection.execute(
                sa.select(components.c.uuid).where(components.c.session_uuid.in_(session_uuids))
            )
        ).scalars()
    )
    subjects = set_uuids + session_uuids + component_uuids
    for chunk in _chunks(subjects):
        await connection.execute(messages.delete().where(messages.c.subject_uuid.in_(chunk)))
    for chunk in _chunks(session_uuids):
        await connection.execute(messages.delete().where(messages.c.session_uuid.in_(chunk)))
        await connection.execute(components.delete().where(components.c.session_uuid.in_(chunk)))
        await connection.execute(sessions.delete().where(sessions.c.uuid.in_(chunk)))
    for chunk in _chunks(set_uuids):
        await connection.execute(messages.delete().where(messages.c.offer_set_uuid.in_(chunk)))
        await connection.execute(offer_sets.delete().where(offer_sets.c.uuid.in_(chunk)))
    return Purged(offer_sets=len(set_uuids), sessions=len(session_uuids))


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    """Bound each IN list (SQLite allows 32766 parameters per statement)."""
    return [items[start : start + size] for start in range(0, len(items), size)]
