"""Reading and writing offer sets, sessions, components and their messages.

Mechanical: records in, records out, no decisions. Phase changes are guarded in SQL
(``UPDATE … WHERE phase IN (…)``): the return value says whether this caller won, so two
racing callers can never both change the same thing. Every query is filtered by owner.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast
from uuid import UUID

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from execbroker.clock import Clock, SystemClock
from execbroker.exceptions import QuotaExceededError, ServiceUnavailableError
from execbroker.metrics import BOOKINGS, CLAIMS_TAKEN_OVER
from execbroker.model.capacity import Amounts, Hold
from execbroker.model.phases import (
    HOLDING_SESSION_PHASES,
    ComponentPhase,
    OfferResult,
    SessionPhase,
)
from execbroker.model.records import (
    ComponentRecord,
    ComponentRole,
    OfferSetRecord,
    Schedule,
    SessionRecord,
)
from execbroker.model.wire import MessageItem
from execbroker.storage.database import Database
from execbroker.storage.tables import UTCDateTime, components, messages, offer_sets, sessions

__all__ = ["BrokerStore", "MessageTarget", "OfferExpiredError"]


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


T = TypeVar("T")

# Sorted, so that the statements built from it are the same in every process.
HOLDING_PHASES = sorted(HOLDING_SESSION_PHASES)


class OfferExpiredError(Exception):
    """An accept found, under the pool's lock, that its offer's time had already run out:
    a booking made after that instant may have planned with the offer's capacity."""

    def __init__(self, expires: datetime) -> None:
        super().__init__(f"the offer expired at {expires.isoformat()}")
        self.expires = expires


Instant = Callable[[Connection], datetime]


class _MustLockError(Exception):
    """An optimistic booking cannot be settled without the pool's lock: roll it back and
    run it again under the lock."""


class Booking:
    """A write transaction that decides against the pool's capacity: read holds, then book.

    Every decision that can add to what the pool holds (offers, direct sessions, accepts,
    extensions) is made inside one of these, so that two of them — in this process or in
    another broker on the same database — never plan against the same free capacity.

    A booking is either *locked* (it holds the pool's lock from its first read) or
    *optimistic* (PostgreSQL, first attempt): it reads, plans and writes without the lock,
    noting what each decision relied on as a condition in SQL. To settle, it sends the
    lock, one statement checking every condition against what is committed by then, and
    the commit, together in one pipeline (one round trip: the lock is held for as long as
    the database takes to run them, not for the broker's turns between statements). A
    condition that no longer holds fails that statement, and so the commit; so does a read
    that only a locked booking may make, such as the exact calendar of a busy pool, before
    anything is sent.
    Either way the attempt is rolled back and runs again, locked from its first read.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        longest: timedelta,
        instant: Instant,
        optimistic: bool = False,
    ) -> None:
        self._connection = connection
        self._longest = longest
        self._instant = instant
        self._optimistic = optimistic
        # What each decision relied on: a check (one of _CHECKS), and a function giving its
        # values when settling (when what this booking itself added is known).
        self._conditions: dict[str, Callable[[], dict[str, Any]]] = {}
        self._booked: list[SessionRecord] = []

    def now(self) -> datetime:
        """The instant this booking decides at: what offers have expired by, what a new
        record is stamped with. Read inside the transaction (on SQLite, under the write
        lock), from the one clock every booking reads: on PostgreSQL the database's, so that
        brokers whose clocks disagree still agree on whether an offer has expired."""
        return self._instant(self._connection)

    def holds(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        exclude: UUID | None = None,
        advisory: bool = False,
    ) -> list[Hold]:
        """The exact calendar over ``[start, end)``. ``advisory``: only for telling the
        user (how far a session could be extended), never for booking."""
        if self._optimistic and not advisory:
            raise _MustLockError
        return _holds(self._connection, start, end, now=now, exclude=exclude, longest=self._longest)

    def hold_total(
        self, start: datetime, end: datetime, *, now: datetime, exclude: UUID | None = None
    ) -> Amounts:
        """The sum of every hold over ``[start, end)`` (advice: nothing is rechecked)."""
        return _hold_total(
            self._connection, start, end, now=now, exclude=exclude, longest=self._longest
        )

    def room_for(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        largest: Amounts,
        capacity: Amounts,
    ) -> Amounts | None:
        """The sum of every hold over ``[start, end)`` if even it leaves room for
        ``largest`` within ``capacity`` (then no instant in the window can be short of it,
        and the exact calendar need not be built); None if it does not."""
        total = self.hold_total(start, end, now=now)
        if not (total + largest).fits_within(capacity):
            return None
        if self._optimistic:
            self._condition(
                "room",
                lambda: {
                    **_window(start, end, now, None, self._longest),
                    "w_own": [str(s.uuid) for s in self._booked],
                    "largest_cores": largest.cores,
                    "largest_memory": largest.memory_gib,
                    "largest_storage": largest.storage_gib,
                    "capacity_cores": capacity.cores,
                    "capacity_memory": capacity.memory_gib,
                    "capacity_storage": capacity.storage_gib,
                },
            )
        return total

    def _condition(self, check: str, values: Callable[[], dict[str, Any]]) -> None:
        if check in self._conditions:
            # Each check is written once per settlement; a second would need a second set
            # of parameter names. Nothing books that way today: settle it locked.
            raise _MustLockError
        self._conditions[check] = values

    def live_offers(self, owner: str, *, now: datetime, limit: int) -> int:
        """How many unexpired offers ``owner`` holds, for a quota of ``limit``."""
        count = _live_offers(self._connection, owner, now=now)
        if self._optimistic:
            self._condition(
                "live_offers", lambda: {"lo_owner": owner, "lo_now": now, "lo_limit": limit}
            )
        return count

    def check_active_quota(self, owner: str, limit: int | None) -> None:
        """:class:`QuotaExceededError` if ``owner`` already has ``limit`` active sessions."""
        _check_active_quota(self._connection, owner, limit)
        if self._optimistic and limit is not None:
            self._condition("active", lambda: {"aq_owner": owner, "aq_limit": limit})

    def settlement(self) -> tuple[tuple[str, ...], dict[str, Any]] | None:
        """An optimistic booking's check, to run under the pool's lock just before its
        commit: which of :data:`_CHECKS` (together one statement that fails unless every
        one holds), and their values. None when nothing needs checking."""
        if not self._conditions:
            return None
        values: dict[str, Any] = {}
        for make in self._conditions.values():
            values.update(make())
        return tuple(sorted(self._conditions)), values

    def insert_offer_set(
        self, offer_set: OfferSetRecord, *, request: dict[str, Any] | None
    ) -> None:
        _insert_offer_set(self._connection, offer_set, request=request)
        self._booked.extend(offer_set.offers)

    def insert_session(self, session: SessionRecord) -> None:
        _insert_sessions(self._connection, [session])
        self._booked.append(session)

    def get_session(self, uuid: UUID, *, owner: str | None) -> SessionRecord | None:
        if self._optimistic:
            raise _MustLockError
        return _get_session(self._connection, uuid, owner=owner)

    def accept(
        self,
        uuid: UUID,
        *,
        owner: str,
        now: datetime,
        note: MessageItem,
        sibling_note: MessageItem,
    ) -> list[UUID]:
        """Accept an OFFERED offer unexpired at ``now`` and reject its OFFERED siblings (the
        uuids of those rejected).

        :class:`OfferExpiredError` if it expired by ``now``; :class:`_LostRaceError` if it is
        not OFFERED or a sibling was accepted first (the offer set's ``accepted_session``
        guard). Locked bookings only: an offer holds its capacity until it expires, so an
        accept must judge the expiry at the instant the calendar is read by everyone else.
        """
        if self._optimistic:
            raise _MustLockError
        connection = self._connection
        row = connection.execute(
            sa.select(sessions.c.offer_set_uuid, sessions.c.expires).where(
                sessions.c.uuid == str(uuid),
                sessions.c.owner == owner,
                sessions.c.phase == SessionPhase.OFFERED.value,
            )
        ).one_or_none()
        if row is None:
            raise _LostRaceError
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
            raise _LostRaceError
        connection.execute(
            sessions.update()
            .where(sessions.c.uuid == str(uuid), sessions.c.phase == SessionPhase.OFFERED.value)
            .values(phase=SessionPhase.ACCEPTED.value, modified=now, next_due=now)
        )
        connection.execute(
            _component_phases([uuid], ComponentPhase.WAITING, (ComponentPhase.INITIALIZING,), now)
        )
        _insert_messages(
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
            .values(phase=SessionPhase.REJECTED.value, modified=now)
        )
        connection.execute(
            _component_phases(
                siblings, ComponentPhase.CANCELLED, (ComponentPhase.INITIALIZING,), now
            )
        )
        for sibling in siblings:
            _insert_messages(
                connection,
                MessageTarget(sibling, session_uuid=sibling, offer_set_uuid=UUID(offer_set_uuid)),
                [sibling_note],
            )
        return siblings

    def extend(
        self,
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
        for the longer run); False when the session left the phases it was read in."""
        moved = self._connection.execute(
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
        self._connection.execute(
            components.update()
            .where(components.c.session_uuid == str(session.uuid))
            .values(
                available_seconds=components.c.available_seconds + delta.total_seconds(),
                modified=now,
            )
        )
        for uuid, spec in specs.items():
            self._connection.execute(
                components.update().where(components.c.uuid == str(uuid)).values(spec=spec)
            )
        _insert_messages(
            self._connection,
            MessageTarget(
                session.uuid, session_uuid=session.uuid, offer_set_uuid=session.offer_set_uuid
            ),
            [note],
        )
        return True


logger = logging.getLogger(__name__)

# How soon a session whose step the database refused is looked at again (alone).
UNWRITTEN_STEP_RETRY = timedelta(seconds=5)
# What a value the database cannot hold raises: a driver error (PostgreSQL refuses a NUL)
# wrapped by SQLAlchemy, or an encoding error (a lone surrogate) before it is sent.
_REFUSED_VALUES = (sa.exc.SQLAlchemyError, ValueError)


class BrokerStore:
    def __init__(
        self,
        database: Database,
        *,
        pool: str = "mock",
        longest_booking: timedelta = timedelta(days=8),
        clock: Clock | None = None,
        lock_timeout: float = 5,
    ) -> None:
        """``longest_booking``: no booking is longer (the planner refuses longer ones); it
        bounds the calendar's window queries. ``clock``: what bookings read the time from
        (:meth:`Booking.now`); the system's clock means the database's on PostgreSQL."""
        self._db = database
        self._lock_timeout = f"{int(lock_timeout * 1000)}ms"
        clock = clock or SystemClock()
        self._instant: Instant = (
            _database_now
            if not database.is_sqlite and isinstance(clock, SystemClock)
            else lambda _connection: clock.now()
        )
        self._pool_key = _lock_key(f"execbroker:pool:{pool}")
        self._longest = longest_booking
        self._settlements: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}

    async def book(self, work: Callable[[Booking], T], *, optimistic: bool = True) -> T:
        """Run ``work`` with a :class:`Booking`, in one transaction: committed if it
        returns, rolled back if it raises.

        SQLite's write transactions are already exclusive: the booking is locked. On
        PostgreSQL it is first tried optimistically, then, if that cannot be settled,
        again under the pool's lock from the start (``work`` may run twice: it must only
        read and write through the booking). ``optimistic=False``: locked from the start
        (for work that needs locked reads anyway).

        A booking that cannot have the pool's lock within the lock timeout (another broker
        holds it and has stalled) is :class:`ServiceUnavailableError`: 503, try again."""
        try:
            return await self._book(work, optimistic=optimistic)
        except (sa.exc.DBAPIError, psycopg.Error) as failure:
            found = getattr(failure, "orig", failure)
            if getattr(found, "sqlstate", None) in (_LOCK_NOT_AVAILABLE, _QUERY_CANCELED):
                BOOKINGS.labels("timed_out").inc()
                raise ServiceUnavailableError(
                    "The booking calendar is busy (its lock was not free within {timeout}); "
                    "try again",
                    {"timeout": self._lock_timeout},
                ) from failure
            raise

    async def _book(self, work: Callable[[Booking], T], *, optimistic: bool) -> T:
        if self._db.is_sqlite:
            BOOKINGS.labels("locked").inc()
            return await self._db.run_write(lambda connection: work(self._booking(connection)))

        def locked(connection: Connection) -> T:
            _lock_pool(connection, self._pool_key, self._lock_timeout)
            return work(self._booking(connection))

        if not optimistic:
            BOOKINGS.labels("locked").inc()
            return await self._db.run_write(locked)
        try:
            done = await self._tentatively(work)
        except _MustLockError:
            BOOKINGS.labels("relocked").inc()
            return await self._db.run_write(locked)
        BOOKINGS.labels("optimistic").inc()
        return done

    def _booking(self, connection: Connection, *, optimistic: bool = False) -> Booking:
        return Booking(
            connection, longest=self._longest, instant=self._instant, optimistic=optimistic
        )

    async def _tentatively(self, work: Callable[[Booking], T]) -> T:
        """Plan and write without the lock; then the lock, the check and the commit, sent
        together. :class:`_MustLockError` (all rolled back) if it cannot be settled."""
        async with self._db.write() as connection:
            bookings: list[Booking] = []

            def plan(sync: Connection) -> T:
                bookings.append(self._booking(sync, optimistic=True))
                return work(bookings[0])

            done = await connection.run_sync(plan)
            settlement = bookings[0].settlement()
            if settlement is None:
                return done
            checks, values = settlement
            raw = cast(
                "psycopg.AsyncConnection[Any]",
                (await connection.get_raw_connection()).driver_connection,
            )
            # The lock, the check and the commit go in one pipeline: they reach the server
            # together, so the lock is held only while the server runs the check and
            # commits, never across a round trip. The check is a prepared statement (one
            # per combination of checks and connection): it is not planned again each time.
            sql, constants = self._settlement_check(checks)
            try:
                async with raw.pipeline(), raw.cursor() as cursor:
                    await cursor.execute(_LOCK_TIMEOUT_SQL, (self._lock_timeout,))
                    await cursor.execute(_LOCK_POOL_SQL, (self._pool_key,))
                    await cursor.execute(sql, {**constants, **values}, prepare=True)
                    await cursor.execute("COMMIT")
            except psycopg.Error as failed:
                if failed.sqlstate == _NO_LONGER_HOLDS:
                    raise _MustLockError from failed
                raise
            # Committed: the transaction block's own commit finds nothing left to do.
            return done

    def _settlement_check(self, checks: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
        """The check statement for ``checks``, with named parameters; built once for each
        combination of checks."""
        found = self._settlements.get(checks)
        if found is None:
            check = sa.select(*(_CHECKS[name] for name in checks)).compile(
                dialect=self._db.engine.dialect
            )
            # The statement's own constants travel as parameters too.
            constants = {k: v for k, v in check.params.items() if v is not None}
            found = self._settlements[checks] = (str(check), constants)
        return found

    async def _lock_pool(self, connection: AsyncConnection) -> None:
        # SQLite's write transactions are already exclusive; PostgreSQL needs a lock that
        # every broker process on the database sees.
        if not self._db.is_sqlite:
            await connection.run_sync(_lock_pool, self._pool_key, self._lock_timeout)

    async def holds(
        self, start: datetime, end: datetime, *, now: datetime, exclude: UUID | None = None
    ) -> list[Hold]:
        """What is held over ``[start, end)``, read without the lock (for advice only)."""
        async with self._db.read() as connection:
            return await connection.run_sync(
                _holds, start, end, now=now, exclude=exclude, longest=self._longest
            )

    async def hold_total(
        self, start: datetime, end: datetime, *, now: datetime, exclude: UUID | None = None
    ) -> Amounts:
        async with self._db.read() as connection:
            return await connection.run_sync(
                _hold_total, start, end, now=now, exclude=exclude, longest=self._longest
            )

    # ------------------------------------------------------------------ creating

    async def insert_offer_set(
        self, offer_set: OfferSetRecord, *, request: dict[str, Any] | None
    ) -> None:
        """An offer set that books nothing (result NO), in one transaction."""
        async with self._db.write() as connection:
            await connection.run_sync(_insert_offer_set, offer_set, request=request)

    # ------------------------------------------------------------------ reading

    async def get_offer_set(self, uuid: UUID, *, owner: str | None) -> OfferSetRecord | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(offer_sets).where(
                        offer_sets.c.uuid == str(uuid), *_owned_by(offer_sets, owner)
                    )
                )
            ).one_or_none()
            if row is None:
                return None
            session_rows = (
                await connection.execute(
                    sa.select(sessions)
                    .where(sessions.c.offer_set_uuid == str(uuid))
                    .order_by(sessions.c.position)
                )
            ).all()
            found = await connection.run_sync(_load_sessions, session_rows)
            offer_set_messages = await connection.run_sync(
                _load_messages, messages.c.subject_uuid == str(uuid)
            )
        return OfferSetRecord(
            uuid=UUID(row.uuid),
            owner=row.owner,
            result=OfferResult(row.result),
            created=row.created,
            modified=row.modified,
            messages=offer_set_messages.get(str(uuid), []),
            offers=found,
        )

    async def get_session(self, uuid: UUID, *, owner: str | None) -> SessionRecord | None:
        async with self._db.read() as connection:
            return await connection.run_sync(_get_session, uuid, owner=owner)

    async def list_sessions(
        self,
        *,
        owner: str | None,
        phases: Sequence[SessionPhase],
        after: datetime | None,
        last: int | None,
    ) -> list[SessionRecord]:
        """Newest first; without components or messages (a listing, not a reading)."""
        query = sa.select(sessions).where(*_owned_by(sessions, owner))
        if phases:
            query = query.where(sessions.c.phase.in_([p.value for p in phases]))
        if after is not None:
            query = query.where(sessions.c.created > after)
        query = query.order_by(sessions.c.created.desc(), sessions.c.uuid).limit(last or 1000)
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        return [_session_from_row(row, [], {}) for row in rows]

    async def list_offer_sets(
        self, *, owner: str | None, after: datetime | None, last: int | None
    ) -> list[OfferSetRecord]:
        query = sa.select(offer_sets).where(*_owned_by(offer_sets, owner))
        if after is not None:
            query = query.where(offer_sets.c.created > after)
        query = query.order_by(offer_sets.c.created.desc(), offer_sets.c.uuid).limit(last or 1000)
        async with self._db.read() as connection:
            rows = (await connection.execute(query)).all()
        return [
            OfferSetRecord(
                uuid=UUID(row.uuid),
                owner=row.owner,
                result=OfferResult(row.result),
                created=row.created,
                modified=row.modified,
            )
            for row in rows
        ]

    async def find_component(self, uuid: UUID, *, owner: str | None) -> ComponentRecord | None:
        async with self._db.read() as connection:
            row = (
                await connection.execute(
                    sa.select(components).where(
                        components.c.uuid == str(uuid), *_owned_by(components, owner)
                    )
                )
            ).one_or_none()
            if row is None:
                return None
            found = await connection.run_sync(_load_messages, messages.c.subject_uuid == str(uuid))
        return _component_from_row(row, found.get(str(uuid), []))

    async def next_expiry(self) -> datetime | None:
        async with self._db.read() as connection:
            value: datetime | None = (
                await connection.execute(
                    sa.select(sa.func.min(sessions.c.expires)).where(
                        sessions.c.phase == SessionPhase.OFFERED.value
                    )
                )
            ).scalar()
        # A bare aggregate loses the column type on SQLite; put the zone back.
        return _AS_UTC.process_result_value(value, self._db.engine.dialect)

    # ------------------------------------------------------------------ phase changes

    async def accept_offer(
        self,
        uuid: UUID,
        *,
        owner: str,
        note: Callable[[datetime], MessageItem],
        sibling_note: Callable[[datetime], MessageItem],
        active_limit: int | None = None,
    ) -> list[UUID] | None:
        """Accept an OFFERED, unexpired offer and reject its OFFERED siblings, atomically,
        under the pool's lock (``note`` and ``sibling_note`` make the messages, stamped
        with the instant of the accept); the siblings it rejected.

        The expiry is judged at an instant read under the lock (:meth:`Booking.now`), not
        one read before waiting for it: meanwhile a booking may have found the offer
        expired and planned with its capacity. :class:`OfferExpiredError` then.
        None when this caller did not win: the offer is not OFFERED, or a sibling was
        accepted first. :class:`QuotaExceededError` when ``owner`` already has
        ``active_limit`` active sessions.
        """

        def accept(booking: Booking) -> list[UUID]:
            now = booking.now()
            booking.check_active_quota(owner, active_limit)
            return booking.accept(
                uuid, owner=owner, now=now, note=note(now), sibling_note=sibling_note(now)
            )

        try:
            return await self.book(accept, optimistic=False)
        except _LostRaceError:
            return None

    async def transition_session(
        self,
        uuid: UUID,
        *,
        owner: str,
        from_phases: Iterable[SessionPhase],
        to_phase: SessionPhase,
        component_phase: ComponentPhase,
        now: datetime,
        note: MessageItem,
    ) -> bool:
        """Move a session from one of ``from_phases`` to ``to_phase``; unended components follow.

        False when the session was not in one of ``from_phases`` (someone else moved it).
        """
        async with self._db.write() as connection:
            moved = await connection.execute(
                sessions.update()
                .where(
                    sessions.c.uuid == str(uuid),
                    sessions.c.owner == owner,
                    sessions.c.phase.in_([p.value for p in from_phases]),
                )
                .values(phase=to_phase.value, modified=now)
                .returning(sessions.c.offer_set_uuid)
            )
            row = moved.one_or_none()
            if row is None:
                return False
            await _set_component_phases(
                connection,
                [uuid],
                component_phase,
                only_from=_UNENDED_COMPONENT_PHASES,
                now=now,
            )
            offer_set = UUID(row.offer_set_uuid) if row.offer_set_uuid else None
            await connection.run_sync(
                _insert_messages,
                MessageTarget(uuid, session_uuid=uuid, offer_set_uuid=offer_set),
                [note],
            )
        return True

    async def request_ending(
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
        has released its components.

        Bumps the revision, so that an engine pass that read the session before this does
        not write back its older view; the first ending decided stays.
        """
        async with self._db.write() as connection:
            moved = await connection.execute(
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
            await connection.run_sync(
                _insert_messages,
                MessageTarget(uuid, session_uuid=uuid, offer_set_uuid=offer_set),
                [note],
            )
        return True

    # ------------------------------------------------------------------ the engine's

    async def claim_due(
        self, *, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[SessionRecord]:
        """Up to ``limit`` sessions whose next step is due and that nobody holds; leased to
        ``worker`` until ``lease_until``. Loaded without their messages."""
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
        async with self._db.write() as connection:
            rows = (await connection.execute(claim)).all()
            if not rows:
                return []
            if not self._db.is_sqlite:
                taken_over = sum(1 for row in rows if row.previous not in (None, worker))
                if taken_over:
                    CLAIMS_TAKEN_OVER.inc(taken_over)
            return await connection.run_sync(_load_sessions, rows, with_messages=False)

    async def commit_advances(
        self, advances: Sequence[Any], *, worker: str, now: datetime
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
        async with self._db.write() as connection:
            held = sa.select(sessions.c.uuid, sessions.c.revision).where(
                sessions.c.uuid.in_([str(a.session_uuid) for a in advances]),
                sessions.c.claimed_by == worker,
            )
            if not self._db.is_sqlite:
                held = held.with_for_update()  # no lease can be taken over mid-commit
            mine = {row.uuid: row.revision for row in (await connection.execute(held)).all()}
            kept = [
                a if mine[str(a.session_uuid)] == a.revision else _undecided(a)
                for a in advances
                if str(a.session_uuid) in mine
            ]
            if not kept:
                return [], await self._next_step_due(connection, now)
            written = await self._write_isolated(connection, kept, now)
            upcoming = await self._next_step_due(connection, now)
        return [a.session_uuid for a in written], upcoming

    async def _write_isolated(
        self, connection: AsyncConnection, kept: list[Any], now: datetime
    ) -> list[Any]:
        """Write the advances, the batch at once if it can; the ones written."""
        failure = await self._write_saved(connection, kept, now)
        if failure is None:
            return kept
        written: list[Any] = []
        unwritten: dict[UUID, BaseException] = {}
        if len(kept) == 1:
            unwritten[kept[0].session_uuid] = failure
        else:
            logger.warning("an engine batch did not write; writing its sessions one by one")
            for advance in kept:
                alone = await self._write_saved(connection, [advance], now)
                if alone is None:
                    written.append(advance)
                else:
                    unwritten[advance.session_uuid] = alone
        for uuid, error in unwritten.items():
            logger.error(
                "an engine step did not write; it is tried again alone",
                extra={"session": str(uuid), "error": str(error)[:500]},
            )
        await connection.execute(
            sessions.update()
            .where(sessions.c.uuid.in_([str(uuid) for uuid in unwritten]))
            .values(next_due=now + UNWRITTEN_STEP_RETRY, claimed_by=None, claimed_until=None)
        )
        return written

    async def _write_saved(
        self, connection: AsyncConnection, kept: list[Any], now: datetime
    ) -> BaseException | None:
        """Write in a savepoint; what the database refused, rolled back to it (None: written)."""
        try:
            async with connection.begin_nested():
                await self._write_advances(connection, kept, now)
        except _REFUSED_VALUES as refused:
            return refused
        return None

    async def _write_advances(
        self, connection: AsyncConnection, kept: list[Any], now: datetime
    ) -> None:
        same = sessions.c.revision == sa.bindparam("b_revision")
        await connection.execute(
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
            await connection.execute(
                components.update()
                .where(components.c.uuid == sa.bindparam("b_uuid"))
                .values(
                    phase=sa.bindparam("b_phase"),
                    due=sa.bindparam("b_due", type_=components.c.due.type),
                    outcome=sa.bindparam("b_outcome"),
                    started_at=sa.bindparam("b_started", type_=components.c.started_at.type),
                    exit_code=sa.bindparam("b_exit"),
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
                    }
                    for _, c in changes
                ],
            )
        rows: list[dict[str, Any]] = []
        for advance in kept:
            session_uuid = advance.session_uuid
            target = MessageTarget(session_uuid, session_uuid=session_uuid)
            rows.extend(_message_row(target, m) for m in advance.messages)
            for change in advance.components:
                target = MessageTarget(change.uuid, session_uuid=session_uuid)
                rows.extend(_message_row(target, m) for m in change.messages)
        if rows:
            await connection.execute(messages.insert(), rows)

    async def next_step_due(self, *, now: datetime) -> datetime | None:
        """When the next step nobody holds is due. Steps another worker holds are its
        business until its lease runs out (and a lease running out is found by polling):
        counting them would have this worker spin on work it cannot claim."""
        async with self._db.read() as connection:
            return await self._next_step_due(connection, now)

    async def _next_step_due(self, connection: AsyncConnection, now: datetime) -> datetime | None:
        value = (
            await connection.execute(
                sa.select(sessions.c.next_due)
                .where(
                    sessions.c.next_due.is_not(None),
                    sa.or_(sessions.c.claimed_until.is_(None), sessions.c.claimed_until < now),
                )
                .order_by(sessions.c.next_due)
                .limit(1)
            )
        ).scalar()
        return _AS_UTC.process_result_value(value, self._db.engine.dialect)

    async def count_by_phase(self) -> dict[str, int]:
        """How many sessions (offers included) are in each phase."""
        async with self._db.read() as connection:
            rows = (
                await connection.execute(
                    sa.select(sessions.c.phase, sa.func.count()).group_by(sessions.c.phase)
                )
            ).all()
        return {str(phase): int(count) for phase, count in rows}

    async def release_all_claims(self) -> int:
        """Forget every claim: for a single broker restarting on its own (SQLite) database,
        every claim is one its previous life held."""
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
        found: dict[UUID, ComponentPhase] = {}
        async with self._db.read() as connection:
            for start in range(0, len(wanted), 500):
                rows = (
                    await connection.execute(
                        sa.select(components.c.uuid, components.c.phase).where(
                            components.c.uuid.in_(wanted[start : start + 500])
                        )
                    )
                ).all()
                found.update({UUID(r.uuid): ComponentPhase(r.phase) for r in rows})
        return found

    async def expire_offers(
        self, *, now: datetime, note: Callable[[datetime], MessageItem]
    ) -> list[UUID]:
        """Every OFFERED session whose ``expires`` has passed becomes EXPIRED; their uuids."""
        async with self._db.write() as connection:
            expired = (
                await connection.execute(
                    sessions.update()
                    .where(
                        sessions.c.phase == SessionPhase.OFFERED.value,
                        sessions.c.expires <= now,
                    )
                    .values(phase=SessionPhase.EXPIRED.value, modified=now)
                    .returning(sessions.c.uuid, sessions.c.offer_set_uuid, sessions.c.expires)
                )
            ).all()
            if not expired:
                return []
            uuids = [UUID(r.uuid) for r in expired]
            await _set_component_phases(
                connection,
                uuids,
                ComponentPhase.CANCELLED,
                only_from=(ComponentPhase.INITIALIZING,),
                now=now,
            )
            rows = []
            for r in expired:
                expires = _AS_UTC.process_result_value(r.expires, self._db.engine.dialect)
                rows.append(
                    _message_row(
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


# ---------------------------------------------------------------------- helpers

_UNENDED_COMPONENT_PHASES = (
    ComponentPhase.INITIALIZING,
    ComponentPhase.WAITING,
    ComponentPhase.PREPARING,
    ComponentPhase.AVAILABLE,
    ComponentPhase.RUNNING,
    ComponentPhase.RELEASING,
)


_AS_UTC = UTCDateTime()


# The SQLSTATE that execbroker_require() raises (migration 0007).
_NO_LONGER_HOLDS = "EB409"
_LOCK_POOL_SQL = "SELECT pg_advisory_xact_lock(%s)"
_LOCK_TIMEOUT_SQL = "SELECT set_config('lock_timeout', %s, true)"
# PostgreSQL's answers to a lock wait or a statement that ran out of time.
_LOCK_NOT_AVAILABLE = "55P03"
_QUERY_CANCELED = "57014"


def _lock_pool(connection: Connection, key: int, timeout: str) -> None:
    """Take the pool's booking lock (PostgreSQL) until the transaction ends, waiting at most
    ``timeout`` for it."""
    connection.exec_driver_sql(_LOCK_TIMEOUT_SQL, (timeout,))
    connection.exec_driver_sql(_LOCK_POOL_SQL, (key,))


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for an advisory lock."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def _phase_in(phase: sa.ColumnElement[str], phases: Iterable[SessionPhase]) -> Any:
    """``phase IN ('A', 'B', …)`` with the phases written into the SQL, not bound: so that
    PostgreSQL's planner can see that a query only wants rows its partial indexes hold.
    (The phases are this module's own constants, never user input.)"""
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
            _phase_in(phase, HOLDING_PHASES),
            sa.and_(
                _phase_in(phase, [SessionPhase.OFFERED]),
                sessions.c.expires > sa.bindparam("w_now", type_=UTCDateTime()),
            ),
            # Cancelled, and its components not yet released.
            sessions.c.releasing,
        ),
    )


def _hold_queries(phase: sa.ColumnElement[str]) -> tuple[sa.Select[Any], sa.Select[Any]]:
    holding = _holding_clause(phase)
    holds = sa.select(
        sessions.c.uuid,
        sessions.c.offer_set_uuid,
        sessions.c.phase,
        sessions.c.book_start,
        sessions.c.book_end,
        sessions.c.cores,
        sessions.c.memory_gib,
        sessions.c.storage_gib,
    ).where(holding)
    total = sa.select(
        sa.func.coalesce(sa.func.sum(sessions.c.cores), 0),
        sa.func.coalesce(sa.func.sum(sessions.c.memory_gib), 0),
        sa.func.coalesce(sa.func.sum(sessions.c.storage_gib), 0),
    ).where(holding)
    return holds, total


# Built once, with bound parameters: constructing these per call cost more than running them.
# SQLite: ``phase || ''`` on purpose: no index serves it, so SQLite ranges over the covering
# booking index (bounded on both sides by the window) instead of walking the phase index,
# which visits every live booking whatever the window. PostgreSQL: the plain phase, which
# lets the planner use the partial index of live bookings (migration 0006).
_HOLDS_SQLITE, _HOLD_TOTAL_SQLITE = _hold_queries(sessions.c.phase.concat(""))
_HOLDS_PG, _HOLD_TOTAL_PG = _hold_queries(sessions.c.phase)


def _room_check() -> sa.ColumnElement[bool]:
    """Everyone else's live bookings over the window still leave room for the largest the
    request may use: their sum does, or else (read only then) their sum with the offers of
    one set counted once, at their largest. Either is an upper bound of what is held at
    any instant in the window."""

    def fits(cores: Any, memory: Any, storage: Any) -> sa.ColumnElement[bool]:
        return sa.and_(
            sa.func.coalesce(cores, 0) + sa.bindparam("largest_cores")
            <= sa.bindparam("capacity_cores"),
            sa.func.coalesce(memory, 0) + sa.bindparam("largest_memory")
            <= sa.bindparam("capacity_memory"),
            sa.func.coalesce(storage, 0) + sa.bindparam("largest_storage")
            <= sa.bindparam("capacity_storage"),
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
    sessions.c.owner == sa.bindparam("aq_owner"), _phase_in(sessions.c.phase, HOLDING_PHASES)
)


# The checks an optimistic booking settles with (PostgreSQL), by name; their parameters
# are named apart, so any of them go together in one statement.
_CHECKS: dict[str, Any] = {
    "room": sa.func.execbroker_require(_room_check(), "room in the pool"),
    "live_offers": sa.func.execbroker_require(
        _LIVE_OFFERS.scalar_subquery() <= sa.bindparam("lo_limit"), "the live-offers quota"
    ),
    "active": sa.func.execbroker_require(
        _ACTIVE.scalar_subquery() <= sa.bindparam("aq_limit"), "the active-sessions quota"
    ),
}
_NOBODY = "00000000-0000-0000-0000-000000000000"


def _window(
    start: datetime, end: datetime, now: datetime, exclude: UUID | None, longest: timedelta
) -> dict[str, Any]:
    return {
        "w_start": start,
        "w_end": end,
        "w_end_bound": end + longest,
        "w_now": now,
        "w_exclude": str(exclude) if exclude else _NOBODY,
    }


def _hold_total(
    connection: Connection,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    exclude: UUID | None,
    longest: timedelta,
) -> Amounts:
    """The sum of every hold overlapping ``[start, end)``: an upper bound of what is held
    at any instant in it, counted by the database without loading the holds."""
    query = _HOLD_TOTAL_SQLITE if connection.dialect.name == "sqlite" else _HOLD_TOTAL_PG
    row = (connection.execute(query, _window(start, end, now, exclude, longest))).one()
    return Amounts(int(row[0]), int(row[1]), int(row[2]))


def _holds(
    connection: Connection,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    exclude: UUID | None,
    longest: timedelta,
) -> list[Hold]:
    """Bookings overlapping ``[start, end)``: live offers (grouped by offer set, as they are
    alternatives) and accepted sessions that have not ended."""
    query = _HOLDS_SQLITE if connection.dialect.name == "sqlite" else _HOLDS_PG
    rows = (connection.execute(query, _window(start, end, now, exclude, longest))).all()
    return [
        Hold(
            group=row.offer_set_uuid
            if row.phase == SessionPhase.OFFERED.value and row.offer_set_uuid
            else row.uuid,
            start=row.book_start,
            end=row.book_end,
            amounts=Amounts(row.cores, row.memory_gib, row.storage_gib),
        )
        for row in rows
    ]


def _insert_offer_set(
    connection: Connection, offer_set: OfferSetRecord, *, request: dict[str, Any] | None
) -> None:
    connection.execute(
        offer_sets.insert().values(
            uuid=str(offer_set.uuid),
            owner=offer_set.owner,
            result=offer_set.result.value,
            created=offer_set.created,
            modified=offer_set.modified,
            request=request,
        )
    )
    target = MessageTarget(offer_set.uuid, offer_set_uuid=offer_set.uuid)
    _insert_sessions(
        connection,
        offer_set.offers,
        extra_messages=[_message_row(target, item) for item in offer_set.messages],
    )


def _live_offers(connection: Connection, owner: str, *, now: datetime) -> int:
    return int(connection.execute(_LIVE_OFFERS, {"lo_owner": owner, "lo_now": now}).scalar_one())


def _count_active(connection: Connection, owner: str) -> int:
    """Sessions of ``owner``'s accepted and not yet ended."""
    return int(connection.execute(_ACTIVE, {"aq_owner": owner}).scalar_one())


def _check_active_quota(connection: Connection, owner: str, limit: int | None) -> None:
    """Sessions accepted and not yet ended count against ``limit`` (None: no limit)."""
    if limit is None:
        return
    active = _count_active(connection, owner)
    if active >= limit:
        raise QuotaExceededError(
            "{user} already has {count} active sessions, the most one user may have; "
            "wait for one to end or cancel one",
            {"user": owner, "count": active},
        )


def _owned_by(table: sa.Table, owner: str | None) -> list[sa.ColumnElement[bool]]:
    """The condition that keeps a query to ``owner``'s rows; none for None (an admin)."""
    return [] if owner is None else [table.c.owner == owner]


def _get_session(connection: Connection, uuid: UUID, *, owner: str | None) -> SessionRecord | None:
    rows = (
        connection.execute(
            sa.select(sessions).where(sessions.c.uuid == str(uuid), *_owned_by(sessions, owner))
        )
    ).all()
    found = _load_sessions(connection, rows)
    return found[0] if found else None


def _undecided(advance: Any) -> Any:
    """``advance`` without the decisions it made on a view a user has since changed: no
    ending, no deferred releases (nothing was asked of the platform for them), no session
    messages. The next pass decides again on what is there now."""
    return dataclasses.replace(
        advance,
        ending=None,
        messages=[],
        components=[c for c in advance.components if c.uuid not in advance.deferred],
    )


class _LostRaceError(Exception):
    """Raised inside a write transaction to roll it back when a guard finds nothing to do."""


def _component_phases(
    session_uuids: Sequence[UUID],
    phase: ComponentPhase,
    only_from: Iterable[ComponentPhase],
    now: datetime,
) -> sa.Update:
    return (
        components.update()
        .where(
            components.c.session_uuid.in_([str(s) for s in session_uuids]),
            components.c.phase.in_([p.value for p in only_from]),
        )
        .values(phase=phase.value, modified=now)
    )


def _database_now(connection: Connection) -> datetime:
    """PostgreSQL's clock: the same for every broker on the database."""
    value: datetime = connection.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
    return value.astimezone(UTC)


async def _set_component_phases(
    connection: AsyncConnection,
    session_uuids: Sequence[UUID],
    phase: ComponentPhase,
    *,
    only_from: Iterable[ComponentPhase],
    now: datetime,
) -> None:
    await connection.execute(_component_phases(session_uuids, phase, only_from, now))


def _schedule_columns(schedule: Schedule) -> dict[str, Any]:
    return {
        "prepare_start": schedule.prepare_start,
        "prepare_seconds": schedule.prepare_duration.total_seconds(),
        "available_start": schedule.available_start,
        "available_seconds": schedule.available_duration.total_seconds(),
        "release_seconds": schedule.release_duration.total_seconds(),
    }


def _schedule_from_row(row: Any) -> Schedule:
    return Schedule(
        prepare_start=row.prepare_start,
        prepare_duration=timedelta(seconds=row.prepare_seconds),
        available_start=row.available_start,
        available_duration=timedelta(seconds=row.available_seconds),
        release_duration=timedelta(seconds=row.release_seconds),
    )


def _insert_sessions(
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
                "connectors": session.connectors,
                "costs": session.costs,
                "next_due": session.next_due,
                **_schedule_columns(session.schedule),
            }
        )
        target = MessageTarget(
            session.uuid, session_uuid=session.uuid, offer_set_uuid=session.offer_set_uuid
        )
        message_rows.extend(_message_row(target, item) for item in session.messages)
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
            message_rows.extend(_message_row(target, item) for item in c.messages)
    if session_rows:
        connection.execute(sessions.insert(), session_rows)
    if component_rows:
        connection.execute(components.insert(), component_rows)
    if message_rows:
        connection.execute(messages.insert(), message_rows)


def _message_row(target: MessageTarget, item: MessageItem) -> dict[str, Any]:
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


def _insert_messages(
    connection: Connection, target: MessageTarget, items: Sequence[MessageItem]
) -> None:
    if items:
        connection.execute(messages.insert(), [_message_row(target, i) for i in items])


def _load_messages(connection: Connection, condition: Any) -> dict[str, list[MessageItem]]:
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


def _component_from_row(row: Any, items: list[MessageItem]) -> ComponentRecord:
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
    )


def _load_sessions(
    connection: Connection, rows: Sequence[Any], *, with_messages: bool = True
) -> list[SessionRecord]:
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
    found = _load_messages(connection, messages.c.session_uuid.in_(uuids)) if with_messages else {}
    by_session: dict[str, list[ComponentRecord]] = defaultdict(list)
    for row in component_rows:
        by_session[row.session_uuid].append(_component_from_row(row, found.get(row.uuid, [])))
    return [_session_from_row(row, by_session.get(row.uuid, []), found) for row in rows]


def _session_from_row(
    row: Any, parts: list[ComponentRecord], found: dict[str, list[MessageItem]]
) -> SessionRecord:
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
    )
