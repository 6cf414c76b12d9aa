"""The database connection: engine set-up, read and write transactions, migrations.

SQLite is the embedded default. It allows one writer at a time, so write transactions begin
with ``BEGIN IMMEDIATE``: they take the write lock up front instead of failing halfway when
a read turns into a write. Within one process, writers also queue on an asyncio lock: when
they wait in SQLite's busy handler instead, it sleeps in steps of up to 100 ms, which
measured as second-long latency tails under load (``bench/requests_bench.py``). Reads use
plain deferred transactions and, with WAL, never wait for writers. PostgreSQL uses ordinary
transactions; guarded updates and row locks serialise what must be serialised.

:meth:`Database.run_write` and :meth:`Database.run_read` run a whole synchronous transaction
function. On SQLite each runs in one hop to a thread of its own on a plain ``sqlite3``
connection: writes on the one writer thread (a booking then holds the write lock for its own
work only, instead of for one event-loop turn per statement, which with many requests in
flight was most of its time: ``bench/lifecycle.py``), reads on a small pool of reader threads
(WAL lets them read while the writer writes, and ``sqlite3`` lets go of the GIL while a
statement runs). Through ``aiosqlite`` a read cost two thread hand-overs per statement, and
reading one session, a dozen: ``bench/http.py``. On PostgreSQL both run on the asyncio
driver's connection (no thread at all). New storage code uses these two; :meth:`read` and
:meth:`write` remain for the few callers that interleave awaits with statements.

:meth:`Database.glance_sql` is for the hottest reads of a few rows by key (is a cached
answer still current?). On SQLite it runs one plain statement in the event loop's own
thread, on a connection of its own: microseconds, where a reader thread waits up to the
interpreter's switch interval (5 ms) to have the GIL back while the loop is busy, and
SQLAlchemy's connection and transaction cost more than the read (``bench/README.md``). It
never waits for a lock there: if SQLite is busy, or fails, the caller reads the usual way.
A glance's rows are kept until anything is committed to the file, by any connection of any
process (SQLite's ``PRAGMA data_version``): a client or dashboard polling while nothing
changes costs one pragma, not a read of every row it polls (``bench/README.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = ["Database", "PostgresLimits"]

_MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")
_IMMEDIATE = "execbroker_immediate"
# Reader threads (and connections) on SQLite: reads run in parallel with each other and with
# the writer; more than a few only queue on two cores.
_SQLITE_READERS = 3
# Glances kept between commits (a dashboard's sessions and listings): a few MiB at most.
_GLANCES_KEPT = 10_000


@dataclass(frozen=True)
class PostgresLimits:
    """How long a PostgreSQL connection, statement and idle transaction may last.

    A broker whose link to the database goes silent must not hold what it locked for the
    hours TCP would take to notice: keepalives and a user timeout end the connection on the
    broker's side, and the server ends a transaction left idle (freeing the pool's lock).
    """

    statement_timeout: float = 30
    idle_in_transaction_timeout: float = 60
    tcp_timeout: float = 30
    session_options: bool = True

    def connect_args(self) -> dict[str, Any]:
        """The libpq connection parameters for these limits."""
        probe = max(1, int(self.tcp_timeout / 3))
        found: dict[str, Any] = {
            "connect_timeout": max(1, int(self.tcp_timeout)),
            "keepalives": 1,
            "keepalives_idle": probe,
            "keepalives_interval": probe,
            "keepalives_count": 3,
            "tcp_user_timeout": int(self.tcp_timeout * 1000),
        }
        if self.session_options:
            found["options"] = (
                f"-c statement_timeout={int(self.statement_timeout * 1000)} "
                "-c idle_in_transaction_session_timeout="
                f"{int(self.idle_in_transaction_timeout * 1000)}"
            )
        return found


class Database:
    """One engine, and transactions shaped for what the caller does with them."""

    def __init__(
        self, url: str, *, echo: bool = False, postgres: PostgresLimits | None = None
    ) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.postgres = postgres or PostgresLimits()
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30}
        else:
            options.update(
                pool_size=10,
                max_overflow=10,
                pool_pre_ping=True,
                connect_args=self.postgres.connect_args(),
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._sync_engine: Engine | None = None
        self._read_engine: Engine | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._glance: sqlite3.Connection | None = None  # see glance_sql
        self._glanced: dict[tuple[str, tuple[Any, ...]], list[tuple[Any, ...]]] = {}
        self._glanced_version: int | None = None  # the data_version they were read at
        if self.is_sqlite:
            _configure_sqlite(self.engine)
            plain = self.url.set(drivername="sqlite")
            self._sync_engine = create_engine(
                plain, connect_args={"timeout": 30, "check_same_thread": False}
            )
            _configure_sqlite_writer(self._sync_engine)
            self._read_engine = create_engine(
                plain,
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=_SQLITE_READERS,
                max_overflow=0,
            )
            _configure_sqlite_reader(self._read_engine)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="execbroker-sqlite-writer")
            self._readers = ThreadPoolExecutor(
                _SQLITE_READERS, thread_name_prefix="execbroker-sqlite-reader"
            )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for reading: a consistent snapshot, never blocking writers."""
        async with self.engine.connect() as connection, connection.begin():
            yield connection

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one read transaction (a consistent snapshot; never blocks writers)."""
        if self._readers is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._readers, functools.partial(self._read_in_thread, work)
            )
        async with self.read() as connection:
            return await connection.run_sync(work)

    def glance_sql(self, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
        """SQLite only: the rows of one plain ``SELECT`` (``?`` parameters, no type
        processing), on the glance connection in the event loop's thread, outside any
        transaction (one statement reads one snapshot), or as it was last read if nothing
        was committed since. None on PostgreSQL, or when SQLite is busy or fails: the
        caller reads the usual way (where a failure is seen by :meth:`on_driver_error`'s
        listeners and answered as any other).
        """
        if not self.is_sqlite:
            return None
        try:
            if self._glance is None:
                self._glance = sqlite3.connect(
                    self.url.database or "",
                    timeout=0,
                    isolation_level=None,
                    check_same_thread=False,
                )
                _sqlite_pragmas(self._glance, busy_ms=0)
            cursor = self._glance.cursor()
            try:
                # Changes whenever another connection (this process's writer, another
                # process) commits; this one only reads, so unchanged means same rows.
                version = cursor.execute("PRAGMA data_version").fetchone()[0]
                if version != self._glanced_version:
                    self._glanced.clear()
                    self._glanced_version = version
                key = (sql, parameters)
                rows = self._glanced.get(key)
                if rows is None:
                    rows = list(cursor.execute(sql, parameters))
                    if len(self._glanced) >= _GLANCES_KEPT:
                        self._glanced.clear()
                    self._glanced[key] = rows
                return list(rows)
            finally:
                cursor.close()
        except sqlite3.Error:
            return None

    def _read_in_thread(self, work: Callable[[Connection], T]) -> T:
        if self._read_engine is None:
            raise RuntimeError("only SQLite reads in a thread")
        with self._read_engine.connect() as connection, connection.begin():
            return work(connection)

    async def ping(self) -> None:
        """Return once the database answers a read; raise whatever stops one."""
        async with self.read() as connection:
            await connection.execute(sa.text("SELECT 1"))

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that writes; committed when the block ends, rolled back on error."""
        async with contextlib.AsyncExitStack() as stack:
            if self._write_lock is not None:
                await stack.enter_async_context(self._write_lock)
            plain = await stack.enter_async_context(self.engine.connect())
            connection = await self._for_writing(plain)
            async with connection.begin():
                yield connection

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction; committed if it returns, else rolled back."""
        if self._writer is not None and self._write_lock is not None:
            loop = asyncio.get_running_loop()
            async with self._write_lock:
                return await loop.run_in_executor(
                    self._writer, functools.partial(self._write_in_thread, work)
                )
        async with self.write() as connection:
            return await connection.run_sync(work)

    def _write_in_thread(self, work: Callable[[Connection], T]) -> T:
        if self._sync_engine is None:
            raise RuntimeError("only SQLite writes in a thread")
        with self._sync_engine.connect() as connection, connection.begin():
            return work(connection)

    async def migrate(self) -> None:
        """Bring the schema up to the newest Alembic revision. Never drops data."""
        async with self.engine.connect() as plain:
            connection = await self._for_writing(plain)
            async with connection.begin():
                if not self.is_sqlite:
                    # A migration may build an index over a large table: no time limit.
                    await connection.execute(sa.text("SET LOCAL statement_timeout = 0"))
                    # Replicas starting together: one migrates, the others wait, then find
                    # nothing left to do. (SQLite's write transaction is already exclusive.)
                    await connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                    )
                await connection.run_sync(_upgrade)

    async def _for_writing(self, connection: AsyncConnection) -> AsyncConnection:
        if self.is_sqlite:
            return await connection.execution_options(**{_IMMEDIATE: True})
        return connection

    def on_driver_error(self, listener: Callable[[BaseException], None]) -> None:
        """Call ``listener`` with every error the driver raises, on any connection (also
        from the SQLite writer's worker thread: ``listener`` must be thread-safe).
        """
        engines = [self.engine.sync_engine]
        engines += [e for e in (self._sync_engine, self._read_engine) if e is not None]
        for engine in engines:
            event.listen(
                engine, "handle_error", lambda context: listener(context.original_exception)
            )

    async def dispose(self) -> None:
        if self._glance is not None:
            self._glance.close()
            self._glance = None
        await self.engine.dispose()
        for pool in (self._writer, self._readers):
            if pool is not None:
                await asyncio.to_thread(pool.shutdown)
        for engine in (self._sync_engine, self._read_engine):
            if engine is not None:
                engine.dispose()


# A fixed key of the advisory lock taken while migrating ("execbroker-migrate").
_MIGRATION_LOCK = 0x65786D6967726174


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, *, busy_ms: int = 30_000) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cursor.close()


def _configure_sqlite_writer(engine: Engine) -> None:
    """The thread-side engine only writes: every transaction begins IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _sqlite_pragmas(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _configure_sqlite_reader(engine: Engine) -> None:
    """The reader threads' engine: deferred transactions, each a snapshot of the last commit."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _sqlite_pragmas(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def _configure_sqlite(engine: AsyncEngine) -> None:
    # The driver's own transaction handling is switched off, so that BEGIN is ours to emit.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _sqlite_pragmas(dbapi_connection)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
