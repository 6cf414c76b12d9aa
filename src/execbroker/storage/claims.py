"""The engine's claims: which broker works on which session, and what it wrote back.

A worker claims sessions whose next step is due (a lease, so that a broker that dies
lets go), works on them, and writes what it did only for the sessions it still holds.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from execbroker.metrics import CLAIMS_TAKEN_OVER
from execbroker.model.advance import Advance
from execbroker.model.phases import ComponentPhase
from execbroker.model.records import SessionRecord
from execbroker.storage.database import Database
from execbroker.storage.plain import insert_rows
from execbroker.storage.rows import AS_UTC, MessageTarget, load_sessions, message_row
from execbroker.storage.tables import components, messages, sessions

__all__ = ["UNWRITTEN_STEP_RETRY", "ClaimStore"]

logger = logging.getLogger(__name__)

# How soon a session whose step the database refused is looked at again (alone).
UNWRITTEN_STEP_RETRY = timedelta(seconds=5)
# What a value the database cannot hold raises: a driver error (PostgreSQL refuses a NUL)
# wrapped by SQLAlchemy, or an encoding error (a lone surrogate) before it is sent.
_REFUSED_VALUES = (sa.exc.SQLAlchemyError, ValueError)


class ClaimStore:
    """Claims and leases of the engine's workers, and the steps they write back."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def claim_due(
        self, *, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[SessionRecord]:
        """Up to ``limit`` sessions whose next step is due and that nobody holds; leased to
        ``worker`` until ``lease_until``. Loaded without their messages.
        """
        due = (
            sa.select(sessions.c.uuid, sessions.c.claimed_by.label("previous"))
            .where(
                sessions.c.next_due <= now,
                sa.or_(sessions.c.claimed_until.is_(None), sessions.c.claimed_until < now),
            )
            .order_by(sessions.c.next_due)
            .limit(limit)
        )
        if not self._db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        due_cte = due.cte("due")
        # One statement picks, leases and reads the sessions (a pass's fixed cost matters:
        # with several brokers, each makes more, smaller passes).
        claim = (
            sessions.update()
            .where(sessions.c.uuid == due_cte.c.uuid)
            .values(claimed_by=worker, claimed_until=lease_until)
            .returning(*sessions.c)
        )
        if not self._db.is_sqlite:
            # Whose lease it was, for the takeover count (SQLite's RETURNING can only name
            # the table it updates; there, one process holds every claim anyway).
            claim = claim.returning(due_cte.c.previous)
        sqlite = self._db.is_sqlite

        def work(connection: Connection) -> list[SessionRecord]:
            rows = connection.execute(claim).all()
            if not rows:
                return []
            if not sqlite:
                taken_over = sum(1 for row in rows if row.previous not in (None, worker))
                if taken_over:
                    CLAIMS_TAKEN_OVER.inc(taken_over)
            return load_sessions(connection, rows, with_messages=False)

        return await self._db.run_write(work)

    async def commit_advances(
        self, advances: Sequence[Advance], *, worker: str, now: datetime
    ) -> tuple[list[UUID], datetime | None]:
        """Write what the engine did, for the sessions ``worker`` still holds; release them.

        Returns the sessions written, and when the next step nobody holds is due then (as
        :meth:`next_step_due`, read in the same transaction). A session whose revision
        moved on meanwhile (a user cancelled or extended it) keeps the user's phase and is
        looked at again at once; the pass's decisions that nothing has acted on yet (its
        ending, the releases it deferred, its session messages) are dropped with it, since
        they were made on the older view: what the platform already did is kept.

        One session's step that the database refuses (a value it cannot hold) does not cost
        the others theirs: the batch is written in a savepoint and, if that fails, each
        session in its own; a session whose write still fails keeps its old state, is
        released and is looked at again alone after :data:`UNWRITTEN_STEP_RETRY`.
        """
        if not advances:
            return [], await self.next_step_due(now=now)

        def work(connection: Connection) -> tuple[list[UUID], datetime | None]:
            held = sa.select(sessions.c.uuid, sessions.c.revision).where(
                sessions.c.uuid.in_([str(a.session_uuid) for a in advances]),
                sessions.c.claimed_by == worker,
            )
            if not self._db.is_sqlite:
                held = held.with_for_update()  # no lease can be taken over mid-commit
            mine = {row.uuid: row.revision for row in connection.execute(held).all()}
            kept = [
                a if mine[str(a.session_uuid)] == a.revision else _undecided(a)
                for a in advances
                if str(a.session_uuid) in mine
            ]
            if not kept:
                return [], _next_step_due(connection, now)
            written = self._write_isolated(connection, kept, now)
            return [a.session_uuid for a in written], _next_step_due(connection, now)

        return await self._db.run_write(work)

    def _write_isolated(
        self, connection: Connection, kept: list[Advance], now: datetime
    ) -> list[Advance]:
        """Write the advances, the batch at once if it can; the ones written."""
        failure = self._write_saved(connection, kept, now)
        if failure is None:
            return kept
        written: list[Advance] = []
        unwritten: dict[UUID, BaseException] = {}
        if len(kept) == 1:
            unwritten[kept[0].session_uuid] = failure
        else:
            logger.warning("an engine batch did not write; writing its sessions one by one")
            for advance in kept:
                alone = self._write_saved(connection, [advance], now)
                if alone is None:
                    written.append(advance)
                else:
                    unwritten[advance.session_uuid] = alone
        for uuid, error in unwritten.items():
            logger.error(
                "an engine step did not write; it is tried again alone",
                extra={"session": str(uuid), "error": str(error)[:500]},
            )
        connection.execute(
            sessions.update()
            .where(sessions.c.uuid.in_([str(uuid) for uuid in unwritten]))
            .values(next_due=now + UNWRITTEN_STEP_RETRY, claimed_by=None, claimed_until=None)
        )
        return written

    def _write_saved(
        self, connection: Connection, kept: list[Advance], now: datetime
    ) -> BaseException | None:
        """Write in a savepoint; what the database refused, rolled back to it (None: written)."""
        try:
            with connection.begin_nested():
                self._write_advances(connection, kept, now)
        except _REFUSED_VALUES as refused:
            return refused
        return None

    def _write_advances(self, connection: Connection, kept: list[Advance], now: datetime) -> None:
        same = sessions.c.revision == sa.bindparam("b_revision")
        connection.execute(
            sessions.update()
            .where(sessions.c.uuid == sa.bindparam("b_uuid"))
            .values(
                phase=sa.case((same, sa.bindparam("b_phase")), else_=sessions.c.phase),
                releasing=sa.case((same, sa.bindparam("b_releasing")), else_=sessions.c.releasing),
                next_due=sa.case((same, sa.bindparam("b_next_due")), else_=now),
                ending=sa.func.coalesce(sessions.c.ending, sa.bindparam("b_ending")),
                seen=True,
                warned=sa.bindparam("b_warned"),
                connectors=sa.bindparam("b_connectors", type_=sessions.c.connectors.type),
                claimed_by=None,
                claimed_until=None,
                modified=now,
                # Every change to what a client reads bumps it (a cached document is stale);
                # ``same`` above compares the value read at the claim, before this.
                revision=sessions.c.revision + 1,
            ),
            [
                {
                    "b_uuid": str(a.session_uuid),
                    "b_revision": a.revision,
                    "b_phase": a.phase.value,
                    "b_releasing": a.releasing,
                    "b_next_due": a.next_due,
                    "b_ending": a.ending.value if a.ending else None,
                    "b_warned": a.warned,
                    "b_connectors": a.connectors,
                }
                for a in kept
            ],
        )
        changes = [(a, c) for a in kept for c in a.components]
        if changes:
            connection.execute(
                components.update()
                .where(components.c.uuid == sa.bindparam("b_uuid"))
                .values(
                    phase=sa.bindparam("b_phase"),
                    due=sa.bindparam("b_due", type_=components.c.due.type),
                    outcome=sa.bindparam("b_outcome"),
                    started_at=sa.bindparam("b_started", type_=components.c.started_at.type),
                    exit_code=sa.bindparam("b_exit"),
                    queued_at=sa.bindparam("b_queued", type_=components.c.queued_at.type),
                    admitted_at=sa.bindparam("b_admitted", type_=components.c.admitted_at.type),
                    modified=now,
                ),
                [
                    {
                        "b_uuid": str(c.uuid),
                        "b_phase": c.phase.value,
                        "b_due": c.due,
                        "b_outcome": c.outcome.value if c.outcome else None,
                        "b_started": c.started_at,
                        "b_exit": c.exit_code,
                        "b_queued": c.queued_at,
                        "b_admitted": c.admitted_at,
                    }
                    for _, c in changes
                ],
            )
        rows: list[dict[str, Any]] = []
        for advance in kept:
            session_uuid = advance.session_uuid
            target = MessageTarget(session_uuid, session_uuid=session_uuid)
            rows.extend(message_row(target, m) for m in advance.messages)
            for change in advance.components:
                target = MessageTarget(change.uuid, session_uuid=session_uuid)
                rows.extend(message_row(target, m) for m in change.messages)
        insert_rows(connection, messages, rows)

    async def next_step_due(self, *, now: datetime) -> datetime | None:
        """When the next step nobody holds is due. Steps another worker holds are its
        business until its lease runs out (and a lease running out is found by polling):
        counting them would have this worker spin on work it cannot claim.
        """
        return await self._db.run_read(functools.partial(_next_step_due, now=now))

    async def release_all(self) -> int:
        """Forget every claim: for a single broker restarting on its own (SQLite) database,
        every claim is one its previous life held.
        """
        async with self._db.write() as connection:
            result = await connection.execute(
                sessions.update()
                .where(sessions.c.claimed_by.is_not(None))
                .values(claimed_by=None, claimed_until=None)
            )
            return result.rowcount

    async def component_phases(self, uuids: Iterable[UUID]) -> dict[UUID, ComponentPhase]:
        """The phases of these components, for those the database knows."""
        wanted = [str(u) for u in uuids]

        def read(connection: Connection) -> dict[UUID, ComponentPhase]:
            found: dict[UUID, ComponentPhase] = {}
            for start in range(0, len(wanted), 500):
                rows = connection.execute(
                    sa.select(components.c.uuid, components.c.phase).where(
                        components.c.uuid.in_(wanted[start : start + 500])
                    )
                )
                found.update({UUID(r.uuid): ComponentPhase(r.phase) for r in rows})
            return found

        return await self._db.run_read(read)


def _next_step_due(connection: Connection, now: datetime) -> datetime | None:
    value = connection.execute(
        sa.select(sessions.c.next_due)
        .where(
            sessions.c.next_due.is_not(None),
            sa.or_(sessions.c.claimed_until.is_(None), sessions.c.claimed_until < now),
        )
        .order_by(sessions.c.next_due)
        .limit(1)
    ).scalar()
    return AS_UTC.process_result_value(value, connection.dialect)


def _undecided(advance: Advance) -> Advance:
    """``advance`` without the decisions it made on a view a user has since changed: no
    ending, no deferred releases (nothing was asked of the platform for them), no session
    messages. The next pass decides again on what is there now.
    """
    return dataclasses.replace(
        advance,
        ending=None,
        messages=[],
        components=[c for c in advance.components if c.uuid not in advance.deferred],
    )
