"""Offer sets and their offers: storing, reading, accepting, rejecting and expiring them.

Mechanical: records in, records out. Phase changes are guarded in SQL
(``UPDATE … WHERE phase = …``): what they return says whether this caller won, so two racing
callers can never both change the same offer. Every query is filtered by owner.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from execbroker.model.phases import ComponentPhase, OfferResult, SessionPhase
from execbroker.model.records import OfferSetRecord
from execbroker.model.wire import MessageItem
from execbroker.storage.database import Database
from execbroker.storage.rows import (
    AS_UTC,
    UNENDED_COMPONENT_PHASES,
    MessageTarget,
    component_phase_update,
    insert_messages,
    insert_offer_set,
    load_messages,
    load_sessions,
    message_row,
    owned_by,
)
from execbroker.storage.tables import messages, offer_sets, sessions

__all__ = ["OfferExpiredError", "OfferStore", "mark_accepted"]


class OfferExpiredError(Exception):
    """An accept found, under the pool's lock, that its offer's time had already run out:
    a booking made after that instant may have planned with the offer's capacity.
    """

    def __init__(self, expires: datetime) -> None:
        super().__init__(f"the offer expired at {expires.isoformat()}")
        self.expires = expires


class OfferStore:
    """Offer sets, and the phase changes of offers outside a booking."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def insert(self, offer_set: OfferSetRecord, *, request: dict[str, Any] | None) -> None:
        """An offer set that books nothing (result NO), in one transaction."""
        await self._db.run_write(
            functools.partial(insert_offer_set, offer_set=offer_set, request=request)
        )

    async def get(self, uuid: UUID, *, owner: str | None) -> OfferSetRecord | None:
        """The offer set with its offers and messages, if ``owner`` (None: anyone) has it."""

        def read(connection: Connection) -> OfferSetRecord | None:
            row = connection.execute(
                sa.select(offer_sets).where(
                    offer_sets.c.uuid == str(uuid), *owned_by(offer_sets, owner)
                )
            ).one_or_none()
            if row is None:
                return None
            session_rows = connection.execute(
                sa.select(sessions)
                .where(sessions.c.offer_set_uuid == str(uuid))
                .order_by(sessions.c.position)
            ).all()
            found = load_sessions(connection, session_rows)
            offer_set_messages = load_messages(connection, messages.c.subject_uuid == str(uuid))
            return OfferSetRecord(
                uuid=UUID(row.uuid),
                owner=row.owner,
                result=OfferResult(row.result),
                created=row.created,
                modified=row.modified,
                messages=offer_set_messages.get(str(uuid), []),
                offers=found,
            )

        return await self._db.run_read(read)

    async def listing(
        self, *, owner: str | None, after: datetime | None, last: int | None
    ) -> list[OfferSetRecord]:
        """Newest first; without offers or messages (a listing, not a reading)."""
        query = sa.select(offer_sets).where(*owned_by(offer_sets, owner))
        if after is not None:
            query = query.where(offer_sets.c.created > after)
        query = query.order_by(offer_sets.c.created.desc(), offer_sets.c.uuid.desc()).limit(
            last or 1000
        )

        def read(connection: Connection) -> list[OfferSetRecord]:
            return [
                OfferSetRecord(
                    uuid=UUID(row.uuid),
                    owner=row.owner,
                    result=OfferResult(row.result),
                    created=row.created,
                    modified=row.modified,
                )
                for row in connection.execute(query)
            ]

        return await self._db.run_read(read)

    async def next_expiry(self) -> datetime | None:
        """When the next offer still OFFERED expires."""

        def read(connection: Connection) -> datetime | None:
            value: datetime | None = connection.execute(
                sa.select(sa.func.min(sessions.c.expires)).where(
                    sessions.c.phase == SessionPhase.OFFERED.value
                )
            ).scalar()
            return AS_UTC.process_result_value(value, connection.dialect)

        return await self._db.run_read(read)

    async def mark_rejected(
        self, uuid: UUID, *, owner: str, now: datetime, note: MessageItem
    ) -> bool:
        """An OFFERED offer becomes REJECTED; its components are cancelled.

        False when the offer was no longer OFFERED (someone else moved it).
        """
        async with self._db.write() as connection:
            moved = await connection.execute(
                sessions.update()
                .where(
                    sessions.c.uuid == str(uuid),
                    sessions.c.owner == owner,
                    sessions.c.phase == SessionPhase.OFFERED.value,
                )
                .values(
                    phase=SessionPhase.REJECTED.value,
                    modified=now,
                    revision=sessions.c.revision + 1,
                )
                .returning(sessions.c.offer_set_uuid)
            )
            row = moved.one_or_none()
            if row is None:
                return False
            await connection.execute(
                component_phase_update(
                    [uuid], ComponentPhase.CANCELLED, UNENDED_COMPONENT_PHASES, now
                )
            )
            offer_set = UUID(row.offer_set_uuid) if row.offer_set_uuid else None
            await connection.run_sync(
                insert_messages,
                MessageTarget(uuid, session_uuid=uuid, offer_set_uuid=offer_set),
                [note],
            )
        return True

    async def expire(self, *, now: datetime, note: Callable[[datetime], MessageItem]) -> list[UUID]:
        """Every OFFERED session whose ``expires`` has passed becomes EXPIRED; their uuids."""
        async with self._db.write() as connection:
            expired = (
                await connection.execute(
                    sessions.update()
                    .where(
                        sessions.c.phase == SessionPhase.OFFERED.value,
                        sessions.c.expires <= now,
                    )
                    .values(
                        phase=SessionPhase.EXPIRED.value,
                        modified=now,
                        revision=sessions.c.revision + 1,
                    )
                    .returning(sessions.c.uuid, sessions.c.offer_set_uuid, sessions.c.expires)
                )
            ).all()
            if not expired:
                return []
            uuids = [UUID(r.uuid) for r in expired]
            await connection.execute(
                component_phase_update(
                    uuids, ComponentPhase.CANCELLED, (ComponentPhase.INITIALIZING,), now
                )
            )
            rows = []
            for r in expired:
                expires = AS_UTC.process_result_value(r.expires, self._db.engine.dialect)
                rows.append(
                    message_row(
                        MessageTarget(
                            UUID(r.uuid),
                            session_uuid=UUID(r.uuid),
                            offer_set_uuid=UUID(r.offer_set_uuid) if r.offer_set_uuid else None,
                        ),
                        note(expires or now),
                    )
                )
            await connection.execute(messages.insert(), rows)
        return uuids


def mark_accepted(
    connection: Connection,
    uuid: UUID,
    *,
    owner: str,
    now: datetime,
    note: MessageItem,
    sibling_note: MessageItem,
) -> list[UUID] | None:
    """Accept an OFFERED offer unexpired at ``now`` and reject its OFFERED siblings: the
    uuids of those rejected. Run inside a locked booking (:meth:`Booking.mark_accepted`).

    :class:`OfferExpiredError` if it expired by ``now``. None, having written nothing, if it
    is not OFFERED or a sibling was accepted first (the offer set's ``accepted_session``
    guard).
    """
    row = connection.execute(
        sa.select(sessions.c.offer_set_uuid, sessions.c.expires).where(
            sessions.c.uuid == str(uuid),
            sessions.c.owner == owner,
            sessions.c.phase == SessionPhase.OFFERED.value,
        )
    ).one_or_none()
    if row is None:
        return None
    if row.expires is not None and row.expires <= now:
        raise OfferExpiredError(row.expires)
    offer_set_uuid = row.offer_set_uuid
    claimed = connection.execute(
        offer_sets.update()
        .where(
            offer_sets.c.uuid == offer_set_uuid,
            offer_sets.c.accepted_session.is_(None),
        )
        .values(accepted_session=str(uuid), modified=now)
    )
    if claimed.rowcount != 1:
        return None
    connection.execute(
        sessions.update()
        .where(sessions.c.uuid == str(uuid), sessions.c.phase == SessionPhase.OFFERED.value)
        .values(
            phase=SessionPhase.ACCEPTED.value,
            modified=now,
            next_due=now,
            accepted_at=now,
            revision=sessions.c.revision + 1,
        )
    )
    connection.execute(
        component_phase_update([uuid], ComponentPhase.WAITING, (ComponentPhase.INITIALIZING,), now)
    )
    insert_messages(
        connection,
        MessageTarget(uuid, session_uuid=uuid, offer_set_uuid=UUID(offer_set_uuid)),
        [note],
    )
    siblings = [
        UUID(r.uuid)
        for r in connection.execute(
            sa.select(sessions.c.uuid).where(
                sessions.c.offer_set_uuid == offer_set_uuid,
                sessions.c.uuid != str(uuid),
                sessions.c.phase == SessionPhase.OFFERED.value,
            )
        )
    ]
    if not siblings:
        return []
    connection.execute(
        sessions.update()
        .where(
            sessions.c.uuid.in_([str(s) for s in siblings]),
            sessions.c.phase == SessionPhase.OFFERED.value,
        )
        .values(phase=SessionPhase.REJECTED.value, modified=now, revision=sessions.c.revision + 1)
    )
    connection.execute(
        component_phase_update(
            siblings, ComponentPhase.CANCELLED, (ComponentPhase.INITIALIZING,), now
        )
    )
    for sibling in siblings:
        insert_messages(
            connection,
            MessageTarget(sibling, session_uuid=sibling, offer_set_uuid=UUID(offer_set_uuid)),
            [sibling_note],
        )
    return siblings
