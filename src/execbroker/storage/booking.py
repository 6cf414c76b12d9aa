"""The booking unit of work: reads of the calendar and the writes that rely on them, made
safe against every other booking of the pool, in this process or another broker.

:class:`Calendar` runs work in a :class:`Booking`; the work (a service's) reads facts
through it (what is held, how many offers or sessions an owner has), decides, and writes
through it. Storage decides nothing here: it only makes sure that what a decision read is
still true when the booking commits.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast
from uuid import UUID

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from execbroker.clock import Clock, SystemClock
from execbroker.exceptions import ServiceUnavailableError
from execbroker.metrics import BOOKINGS
from execbroker.model.capacity import Amounts, Hold
from execbroker.model.moves import WaitingSession
from execbroker.model.occupancy import PoolBooking
from execbroker.model.records import OfferSetRecord, SessionRecord
from execbroker.model.wire import MessageItem
from execbroker.storage import moves, queries
from execbroker.storage.database import Database
from execbroker.storage.offers import mark_accepted
from execbroker.storage.rows import insert_offer_set, insert_sessions, load_session
from execbroker.storage.sessions import extend_run

__all__ = ["Booking", "Calendar", "pool_lock_key"]

T = TypeVar("T")

Instant = Callable[[Connection], datetime]


class _MustLockError(Exception):
    """An optimistic booking cannot be settled without the pool's lock: roll it back and
    run it again under the lock.
    """


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
    Either way the attempt is rolled back and runs again, locked from its first read: the
    work given to :meth:`Calendar.book` may run twice, so it must only read and write
    through the booking.
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
        # What each decision relied on: a check (one of queries.CHECKS), and a function
        # giving its values when settling (when what this booking itself added is known).
        self._conditions: dict[str, Callable[[], dict[str, Any]]] = {}
        self._booked: list[SessionRecord] = []

    def now(self) -> datetime:
        """The instant this booking decides at: what offers have expired by, what a new
        record is stamped with. Read inside the transaction (on SQLite, under the write
        lock), from the one clock every booking reads: on PostgreSQL the database's, so that
        brokers whose clocks disagree still agree on whether an offer has expired.
        """
        return self._instant(self._connection)

    # ------------------------------------------------------------------ facts

    def holds(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        exclude: UUID | None = None,
        advisory: bool = False,
        account: str | None = None,
    ) -> list[Hold]:
        """The exact calendar over ``[start, end)``, interactive sessions counted as
        ``account``'s limit counts them (None: one account for all; :func:`queries.window`).
        ``advisory``: only for telling the user (how far a session could be extended), never
        for booking.
        """
        if self._optimistic and not advisory:
            raise _MustLockError
        return queries.holds(
            self._connection,
            start,
            end,
            now=now,
            exclude=exclude,
            longest=self._longest,
            account=account,
        )

    def hold_total(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        exclude: UUID | None = None,
        account: str | None = None,
    ) -> Amounts:
        """The sum of every hold over ``[start, end)`` (advice: nothing is rechecked)."""
        return queries.hold_total(
            self._connection,
            start,
            end,
            now=now,
            exclude=exclude,
            longest=self._longest,
            account=account,
        )

    def hold_total_keeping_room(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        largest: Amounts,
        capacity: Amounts,
        account: str | None = None,
    ) -> Amounts:
        """The sum of every hold over ``[start, end)``, for a decision that books up to
        ``largest`` in the window if the sum leaves room for it within ``capacity``
        (interactive sessions: as ``account``'s limit counts them, see :meth:`holds`).

        An optimistic booking then settles only if everyone else's holds still leave that
        room when it commits (a locked one needs no check: nobody else books meanwhile).
        When the sum does not leave the room, the decision reads the exact calendar
        (:meth:`holds`) instead, which only a locked booking may: the check is then never
        sent.
        """
        total = self.hold_total(start, end, now=now, account=account)
        if self._optimistic:
            self._condition(
                "room",
                lambda: {
                    **queries.window(start, end, now, None, self._longest, account=account),
                    "w_own": [str(s.uuid) for s in self._booked],
                    "largest_cores": largest.cores,
                    "largest_memory": largest.memory_gib,
                    "largest_storage": largest.storage_gib,
                    "largest_interactive": largest.interactive,
                    "capacity_cores": capacity.cores,
                    "capacity_memory": capacity.memory_gib,
                    "capacity_storage": capacity.storage_gib,
                    "capacity_interactive": capacity.interactive,
                },
            )
        return total

    def live_offers(self, owner: str, *, now: datetime, at_most: int) -> int:
        """How many unexpired offers ``owner`` holds, for a decision that keeps them (and
        the offers this booking adds) at ``at_most``: an optimistic booking settles only if
        they still are then.
        """
        count = queries.count_live_offers(self._connection, owner, now=now)
        if self._optimistic:
            self._condition(
                "live_offers", lambda: {"lo_owner": owner, "lo_now": now, "lo_limit": at_most}
            )
        return count

    def active_sessions(self, owner: str, *, at_most: int) -> int:
        """How many sessions ``owner`` has accepted and not yet ended, for a decision that
        keeps them (and those this booking adds) at ``at_most``: an optimistic booking
        settles only if they still are then.
        """
        count = queries.count_active_sessions(self._connection, owner)
        if self._optimistic:
            self._condition("active", lambda: {"aq_owner": owner, "aq_limit": at_most})
        return count

    def get_session(self, uuid: UUID, *, owner: str | None) -> SessionRecord | None:
        """The session as it is now (locked bookings only)."""
        if self._optimistic:
            raise _MustLockError
        return load_session(self._connection, uuid, owner=owner)

    def _condition(self, check: str, values: Callable[[], dict[str, Any]]) -> None:
        if check in self._conditions:
            # Each check is written once per settlement; a second would need a second set
            # of parameter names. Nothing books that way today: settle it locked.
            raise _MustLockError
        self._conditions[check] = values

    def settlement(self) -> tuple[tuple[str, ...], dict[str, Any]] | None:
        """An optimistic booking's check, to run under the pool's lock just before its
        commit: which of :data:`queries.CHECKS` (together one statement that fails unless
        every one holds), and their values. None when nothing needs checking.
        """
        if not self._conditions:
            return None
        values: dict[str, Any] = {}
        for make in self._conditions.values():
            values.update(make())
        return tuple(sorted(self._conditions)), values

    # ------------------------------------------------------------------ writes

    def insert_offer_set(
        self, offer_set: OfferSetRecord, *, request: dict[str, Any] | None
    ) -> None:
        """Book the offer set's offers."""
        insert_offer_set(self._connection, offer_set, request=request)
        self._booked.extend(offer_set.offers)

    def insert_session(self, session: SessionRecord) -> None:
        """Book a session (a direct run)."""
        insert_sessions(self._connection, [session])
        self._booked.append(session)

    def mark_accepted(
        self,
        uuid: UUID,
        *,
        owner: str,
        now: datetime,
        note: MessageItem,
        sibling_note: MessageItem,
    ) -> list[UUID] | None:
        """Accept the offer and reject its siblings (:func:`storage.offers.mark_accepted`).

        Locked bookings only: an offer holds its capacity until it expires, so an accept
        must judge the expiry at the instant the calendar is read by everyone else.
        """
        if self._optimistic:
            raise _MustLockError
        return mark_accepted(
            self._connection, uuid, owner=owner, now=now, note=note, sibling_note=sibling_note
        )

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
        """Lengthen the run by ``delta`` (:func:`storage.sessions.extend_run`)."""
        return extend_run(
            self._connection, session, delta=delta, costs=costs, specs=specs, now=now, note=note
        )

    def waiting_to_move(self, *, now: datetime, limit: int) -> list[WaitingSession]:
        """Accepted sessions that may move earlier and have not begun, first accepted
        first (:func:`storage.moves.waiting_to_move`). Locked bookings only: a move is
        decided on the exact calendar.
        """
        if self._optimistic:
            raise _MustLockError
        return moves.waiting_to_move(self._connection, now=now, limit=limit)

    def move_earlier(
        self, session: WaitingSession, *, start: datetime, now: datetime, note: MessageItem
    ) -> bool:
        """Start ``session`` at ``start`` instead (:func:`storage.moves.move_earlier`);
        False when it changed since it was read. Locked bookings only.
        """
        if self._optimistic:
            raise _MustLockError
        return moves.move_earlier(self._connection, session, start=start, now=now, note=note)


class Calendar:
    """The pool's bookings: runs booking work (:meth:`book`), and reads the calendar for
    advice outside a booking.
    """

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
        (:meth:`Booking.now`); the system's clock means the database's on PostgreSQL.
        """
        self._db = database
        self._lock_timeout = f"{int(lock_timeout * 1000)}ms"
        clock = clock or SystemClock()
        self._instant: Instant = (
            _database_now
            if not database.is_sqlite and isinstance(clock, SystemClock)
            else lambda _connection: clock.now()
        )
        self._pool_key = pool_lock_key(pool)
        self._longest = longest_booking
        self._settlements: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}
        # How many bookings this process has committed: advice read from the calendar (an
        # active session's extension room) is stale once it has moved on.
        self.generation = 0

    async def book(self, work: Callable[[Booking], T], *, optimistic: bool = True) -> T:
        """Run ``work`` with a :class:`Booking`, in one transaction: committed if it
        returns, rolled back if it raises.

        SQLite's write transactions are already exclusive: the booking is locked. On
        PostgreSQL it is first tried optimistically, then, if that cannot be settled,
        again under the pool's lock from the start (``work`` may run twice: it must only
        read and write through the booking). ``optimistic=False``: locked from the start
        (for work that needs locked reads anyway).

        A booking that cannot have the pool's lock within the lock timeout (another broker
        holds it and has stalled) is :class:`ServiceUnavailableError`: 503, try again.
        """
        try:
            done = await self._book(work, optimistic=optimistic)
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
        self.generation += 1
        return done

    async def _book(self, work: Callable[[Booking], T], *, optimistic: bool) -> T:
        if self._db.is_sqlite:
            BOOKINGS.labels("locked").inc()
            return await self._db.run_write(lambda connection: work(self._booking(connection)))

        def locked(connection: Connection) -> T:
            take_pool_lock(connection, self._pool_key, self._lock_timeout)
            return work(self._booking(connection))

        if not optimistic:
            BOOKINGS.labels("locked").inc()
            return await self._db.run_write(locked)
        try:
            done = await self._book_optimistically(work)
        except _MustLockError:
            BOOKINGS.labels("relocked").inc()
            return await self._db.run_write(locked)
        BOOKINGS.labels("optimistic").inc()
        return done

    def _booking(self, connection: Connection, *, optimistic: bool = False) -> Booking:
        return Booking(
            connection, longest=self._longest, instant=self._instant, optimistic=optimistic
        )

    async def _book_optimistically(self, work: Callable[[Booking], T]) -> T:
        """Plan and write without the lock; then the lock, the check and the commit, sent
        together. :class:`_MustLockError` (all rolled back) if it cannot be settled.
        """
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
        combination of checks.
        """
        found = self._settlements.get(checks)
        if found is None:
            check = sa.select(*(queries.CHECKS[name] for name in checks)).compile(
                dialect=self._db.engine.dialect
            )
            # The statement's own constants travel as parameters too.
            constants = {k: v for k, v in check.params.items() if v is not None}
            found = self._settlements[checks] = (str(check), constants)
        return found

    async def holds(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        exclude: UUID | None = None,
        account: str | None = None,
    ) -> list[Hold]:
        """What is held over ``[start, end)``, read without the lock (for advice only)."""
        return await self._advise(
            queries.holds, start, end, now=now, exclude=exclude, account=account
        )

    async def hold_total(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        exclude: UUID | None = None,
        account: str | None = None,
    ) -> Amounts:
        """The sum of what is held over ``[start, end)``, read without the lock (advice)."""
        return await self._advise(
            queries.hold_total, start, end, now=now, exclude=exclude, account=account
        )

    async def _advise(
        self,
        query: Callable[..., T],
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        exclude: UUID | None,
        account: str | None,
    ) -> T:
        """``query`` (:func:`queries.holds` or :func:`queries.hold_total`) over the window,
        in one read transaction.
        """
        return await self._db.run_read(
            functools.partial(
                query,
                start=start,
                end=end,
                now=now,
                exclude=exclude,
                longest=self._longest,
                account=account,
            )
        )

    async def any_waiting_to_move(self, *, now: datetime) -> bool:
        """Whether any accepted session waits that could move earlier (a cheap read, to
        skip taking the pool's lock when nothing could move).
        """
        return await self._db.run_read(functools.partial(moves.any_waiting_to_move, now=now))

    async def bookings(
        self, start: datetime, end: datetime, *, now: datetime, limit: int
    ) -> list[PoolBooking]:
        """The bookings that held capacity over ``[start, end)`` (at most ``limit``, by
        start), read without the lock (the operator's calendar: see
        :func:`queries.pool_bookings`).
        """
        return await self._db.run_read(
            functools.partial(
                queries.pool_bookings,
                start=start,
                end=end,
                now=now,
                longest=self._longest,
                limit=limit,
            )
        )


# The SQLSTATE that execbroker_require() raises (migration 0007).
_NO_LONGER_HOLDS = "EB409"
_LOCK_POOL_SQL = "SELECT pg_advisory_xact_lock(%s)"
_LOCK_TIMEOUT_SQL = "SELECT set_config('lock_timeout', %s, true)"
# PostgreSQL's answers to a lock wait or a statement that ran out of time.
_LOCK_NOT_AVAILABLE = "55P03"
_QUERY_CANCELED = "57014"


def take_pool_lock(connection: Connection, key: int, timeout: str) -> None:
    """Take the pool's booking lock (PostgreSQL) until the transaction ends, waiting at most
    ``timeout`` for it.
    """
    connection.exec_driver_sql(_LOCK_TIMEOUT_SQL, (timeout,))
    connection.exec_driver_sql(_LOCK_POOL_SQL, (key,))


def pool_lock_key(pool: str) -> int:
    """The advisory lock key of ``pool``'s calendar: stable, signed 64-bit."""
    return int.from_bytes(
        hashlib.blake2b(f"execbroker:pool:{pool}".encode(), digest_size=8).digest(),
        "big",
        signed=True,
    )


def _database_now(connection: Connection) -> datetime:
    """PostgreSQL's clock: the same for every broker on the database."""
    value: datetime = connection.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
    return value.astimezone(UTC)
