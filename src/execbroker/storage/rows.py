"""Records to rows and back: sessions, components, offer sets and their messages.

Plain mapping on a connection the caller already holds: no transactions, no decisions.
The stores (:mod:`~execbroker.storage.offers`, :mod:`~execbroker.storage.sessions`,
:mod:`~execbroker.storage.claims`) and the booking unit of work
(:mod:`~execbroker.storage.booking`) share it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from execbroker.model.phases import ComponentPhase, SessionPhase
from execbroker.model.records import (
    ComponentRecord,
    ComponentRole,
    OfferSetRecord,
    Schedule,
    SessionRecord,
)
from execbroker.model.wire import MessageItem
from execbroker.storage.plain import insert_rows
from execbroker.storage.tables import UTCDateTime, components, messages, offer_sets, sessions

__all__ = [
    "AS_UTC",
    "UNENDED_COMPONENT_PHASES",
    "MessageTarget",
    "component_from_row",
    "component_phase_update",
    "insert_messages",
    "insert_offer_set",
    "insert_sessions",
    "load_messages",
    "load_session",
    "load_sessions",
    "message_row",
    "owned_by",
    "session_from_row",
]

# A column type's result processing, for values read without one (a bare aggregate loses
# the column type on SQLite): puts the zone back.
AS_UTC = UTCDateTime()

UNENDED_COMPONENT_PHASES = (
    ComponentPhase.INITIALIZING,
    ComponentPhase.WAITING,
    ComponentPhase.PREPARING,
    ComponentPhase.AVAILABLE,
    ComponentPhase.RUNNING,
    ComponentPhase.RELEASING,
)


class MessageTarget:
    """Where a new message belongs: its subject, and the session and offer set above it."""

    __slots__ = ("offer_set_uuid", "session_uuid", "subject_uuid")

    def __init__(
        self,
        subject_uuid: UUID,
        *,
        session_uuid: UUID | None = None,
        offer_set_uuid: UUID | None = None,
    ) -> None:
        self.subject_uuid = subject_uuid
        self.session_uuid = session_uuid
        self.offer_set_uuid = offer_set_uuid


def owned_by(table: sa.Table, owner: str | None) -> list[sa.ColumnElement[bool]]:
    """The condition that keeps a query to ``owner``'s rows; none for None (an admin)."""
    return [] if owner is None else [table.c.owner == owner]


def component_phase_update(
    session_uuids: Sequence[UUID],
    phase: ComponentPhase,
    only_from: Iterable[ComponentPhase],
    now: datetime,
) -> sa.Update:
    """Move the components of these sessions that are in one of ``only_from`` to ``phase``."""
    return (
        components.update()
        .where(
            components.c.session_uuid.in_([str(s) for s in session_uuids]),
            components.c.phase.in_([p.value for p in only_from]),
        )
        .values(phase=phase.value, modified=now)
    )


# ---------------------------------------------------------------------- writing


def insert_offer_set(
    connection: Connection, offer_set: OfferSetRecord, *, request: dict[str, Any] | None
) -> None:
    """The offer set, its offers, their components and every message of them."""
    insert_rows(
        connection,
        offer_sets,
        [
            {
                "uuid": str(offer_set.uuid),
                "owner": offer_set.owner,
                "result": offer_set.result.value,
                "created": offer_set.created,
                "modified": offer_set.modified,
                "request": request,
            }
        ],
    )
    target = MessageTarget(offer_set.uuid, offer_set_uuid=offer_set.uuid)
    insert_sessions(
        connection,
        offer_set.offers,
        extra_messages=[message_row(target, item) for item in offer_set.messages],
    )


def insert_sessions(
    connection: Connection,
    records: Sequence[SessionRecord],
    *,
    extra_messages: Sequence[dict[str, Any]] = (),
) -> None:
    """Sessions, their components and all their messages: three batched INSERTs."""
    session_rows: list[dict[str, Any]] = []
    component_rows: list[dict[str, Any]] = []
    message_rows: list[dict[str, Any]] = list(extra_messages)
    for session in records:
        session_rows.append(
            {
                "uuid": str(session.uuid),
                "owner": session.owner,
                "offer_set_uuid": str(session.offer_set_uuid) if session.offer_set_uuid else None,
                "position": session.position,
                "phase": session.phase.value,
                "expires": session.expires,
                "created": session.created,
                "modified": session.modified,
                "book_start": session.schedule.prepare_start,
                "book_end": session.schedule.release_end,
                "cores": session.cores,
                "memory_gib": session.memory_gib,
                "storage_gib": session.storage_gib,
                "interactive": session.interactive,
                "connectors": session.connectors,
                "costs": session.costs,
                "next_due": session.next_due,
                "moves_earlier": session.moves_earlier,
                "earliest_start": session.earliest_start,
                "promised_start": session.promised_start or session.schedule.available_start,
                "accepted_at": session.accepted_at,
                **_schedule_columns(session.schedule),
            }
        )
        target = MessageTarget(
            session.uuid, session_uuid=session.uuid, offer_set_uuid=session.offer_set_uuid
        )
        message_rows.extend(message_row(target, item) for item in session.messages)
        for c in session.components:
            component_rows.append(
                {
                    "uuid": str(c.uuid),
                    "session_uuid": str(session.uuid),
                    "owner": c.owner,
                    "role": c.role.value,
                    "position": c.position,
                    "name": c.name,
                    "kind": c.kind,
                    "spec": c.spec,
                    "description": c.description,
                    "phase": c.phase.value,
                    "created": c.created,
                    "modified": c.modified,
                    **_schedule_columns(c.schedule),
                }
            )
            target = MessageTarget(
                c.uuid, session_uuid=session.uuid, offer_set_uuid=session.offer_set_uuid
            )
            message_rows.extend(message_row(target, item) for item in c.messages)
    insert_rows(connection, sessions, session_rows)
    insert_rows(connection, components, component_rows)
    insert_rows(connection, messages, message_rows)


def message_row(target: MessageTarget, item: MessageItem) -> dict[str, Any]:
    """The row of one message about ``target``."""
    return {
        "subject_uuid": str(target.subject_uuid),
        "session_uuid": str(target.session_uuid) if target.session_uuid else None,
        "offer_set_uuid": str(target.offer_set_uuid) if target.offer_set_uuid else None,
        "time": item.time,
        "level": item.level.value if item.level else "INFO",
        "kind": item.kind,
        "template": item.template or "",
        "values": item.values or {},
        "message": item.message or "",
    }


def insert_messages(
    connection: Connection, target: MessageTarget, items: Sequence[MessageItem]
) -> None:
    """Messages about ``target``, in one INSERT."""
    insert_rows(connection, messages, [message_row(target, i) for i in items])


def _schedule_columns(schedule: Schedule) -> dict[str, Any]:
    return {
        "prepare_start": schedule.prepare_start,
        "prepare_seconds": schedule.prepare_duration.total_seconds(),
        "available_start": schedule.available_start,
        "available_seconds": schedule.available_duration.total_seconds(),
        "release_seconds": schedule.release_duration.total_seconds(),
    }


# ---------------------------------------------------------------------- reading


def load_messages(connection: Connection, condition: Any) -> dict[str, list[MessageItem]]:
    """The messages that meet ``condition``, oldest first, by subject."""
    rows = (connection.execute(sa.select(messages).where(condition).order_by(messages.c.id))).all()
    grouped: dict[str, list[MessageItem]] = defaultdict(list)
    for row in rows:
        grouped[row.subject_uuid].append(
            MessageItem(
                kind=row.kind,
                time=row.time,
                level=row.level,
                template=row.template,
                values=row.values,
                message=row.message,
            )
        )
    return grouped


def load_session(connection: Connection, uuid: UUID, *, owner: str | None) -> SessionRecord | None:
    """One session with its components and messages, if ``owner`` (None: anyone) has it."""
    rows = (
        connection.execute(
            sa.select(sessions).where(sessions.c.uuid == str(uuid), *owned_by(sessions, owner))
        )
    ).all()
    found = load_sessions(connection, rows)
    return found[0] if found else None


def load_sessions(
    connection: Connection, rows: Sequence[Any], *, with_messages: bool = True
) -> list[SessionRecord]:
    """The sessions of these rows, with their components (and their messages)."""
    if not rows:
        return []
    uuids = [row.uuid for row in rows]
    component_rows = (
        connection.execute(
            sa.select(components)
            .where(components.c.session_uuid.in_(uuids))
            .order_by(components.c.session_uuid, components.c.role, components.c.position)
        )
    ).all()
    found = load_messages(connection, messages.c.session_uuid.in_(uuids)) if with_messages else {}
    by_session: dict[str, list[ComponentRecord]] = defaultdict(list)
    for row in component_rows:
        by_session[row.session_uuid].append(component_from_row(row, found.get(row.uuid, [])))
    return [session_from_row(row, by_session.get(row.uuid, []), found) for row in rows]


def component_from_row(row: Any, items: list[MessageItem]) -> ComponentRecord:
    """A component from its row and its messages."""
    return ComponentRecord(
        uuid=UUID(row.uuid),
        session_uuid=UUID(row.session_uuid),
        owner=row.owner,
        role=ComponentRole(row.role),
        position=row.position,
        name=row.name,
        kind=row.kind,
        spec=row.spec,
        description=row.description,
        phase=ComponentPhase(row.phase),
        schedule=_schedule_from_row(row),
        created=row.created,
        modified=row.modified,
        messages=items,
        due=row.due,
        outcome=ComponentPhase(row.outcome) if row.outcome else None,
        started_at=row.started_at,
        exit_code=row.exit_code,
        queued_at=row.queued_at,
        admitted_at=row.admitted_at,
    )


def session_from_row(
    row: Any, parts: list[ComponentRecord], found: dict[str, list[MessageItem]]
) -> SessionRecord:
    """A session from its row, its components and the messages read with them."""
    return SessionRecord(
        uuid=UUID(row.uuid),
        owner=row.owner,
        offer_set_uuid=UUID(row.offer_set_uuid) if row.offer_set_uuid else None,
        position=row.position,
        phase=SessionPhase(row.phase),
        expires=row.expires,
        schedule=_schedule_from_row(row),
        cores=row.cores,
        memory_gib=row.memory_gib,
        storage_gib=row.storage_gib,
        interactive=row.interactive,
        created=row.created,
        modified=row.modified,
        messages=found.get(row.uuid, []),
        connectors=row.connectors,
        components=parts,
        costs=row.costs or [],
        next_due=row.next_due,
        ending=SessionPhase(row.ending) if row.ending else None,
        seen=row.seen,
        warned=row.warned,
        revision=row.revision,
        # Read where the query selected them (a listing may not).
        moves_earlier=bool(getattr(row, "moves_earlier", False)),
        earliest_start=getattr(row, "earliest_start", None),
        promised_start=getattr(row, "promised_start", None),
        accepted_at=getattr(row, "accepted_at", None),
    )


def _schedule_from_row(row: Any) -> Schedule:
    return Schedule(
        prepare_start=row.prepare_start,
        prepare_duration=timedelta(seconds=row.prepare_seconds),
        available_start=row.available_start,
        available_duration=timedelta(seconds=row.available_seconds),
        release_duration=timedelta(seconds=row.release_seconds),
    )
