"""Whether the database takes writes now: what ``/healthz`` reports besides reachability.

A broker whose reads work but whose writes fail (a full disk, a read-only file system, a
corrupted file) used to answer ``/healthz`` with ``ok``. :class:`StorageProbe` finds out,
cheaply:

- **a real write**: each probe upserts one row of ``heartbeats`` in a write transaction,
  on SQLite and PostgreSQL alike; a read-only, full or broken database fails it;
- **free space** (SQLite): a write into SQLite's write-ahead log may reuse space and
  succeed on a full disk, so the file system holding the database must also keep
  ``healthz_min_free_bytes`` free;
- **integrity** (SQLite): ``PRAGMA quick_check`` at start, in a worker thread, so that
  damaged pages of tables the heartbeat never touches are found too, and again whenever
  any query of the broker's meets SQLite's "malformed" or "not a database" (at most one
  check at a time). Its cost grows with the database; it never delays serving, and a
  finding holds until a restart.

Probes are at most one every ``cache_for`` seconds, and never on the caller's time except
the first: a stale result is answered at once while a fresh probe runs in the background.
``/healthz`` therefore never waits behind a long write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from execbroker.background import cancel_and_wait
from execbroker.clock import Clock
from execbroker.storage.database import Database
from execbroker.storage.tables import heartbeats

__all__ = ["StorageHealth", "StorageProbe"]

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


@dataclass(frozen=True)
class StorageHealth:
    """``problem`` is None when writes commit; else one line saying what is wrong."""

    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _reason(failure: BaseException) -> str:
    if isinstance(failure, DBAPIError) and failure.orig is not None:
        failure = failure.orig
    text = str(failure) or type(failure).__name__
    return " ".join(text.split())[:200]


# SQLITE_CORRUPT and SQLITE_NOTADB (primary codes: the low byte of an extended one).
_DAMAGE_CODES = frozenset({11, 26})


def _damage(failure: BaseException) -> bool:
    code = getattr(failure, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _DAMAGE_CODES


class StorageProbe:
    """Probes the database's writes; ``start()`` and ``stop()`` from the app's lifespan."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock,
        min_free_bytes: int,
        cache_for: float = 2.0,
        write_timeout: float = 5.0,
    ) -> None:
        self.database = database
        self.clock = clock
        self.min_free_bytes = min_free_bytes
        self.cache_for = cache_for
        self.write_timeout = write_timeout
        path = database.url.database if database.is_sqlite else None
        self.sqlite_file = Path(path) if path and path != ":memory:" else None
        self._last: StorageHealth | None = None
        self._checked_at = 0.0
        self._refreshing: asyncio.Task[StorageHealth] | None = None
        self._integrity_problem: str | None = None
        self._integrity: asyncio.Task[None] | None = None
        self._integrity_connection: sqlite3.Connection | None = None

    def start(self) -> None:
        if self.sqlite_file is None:
            return
        loop = asyncio.get_running_loop()

        def heard(failure: BaseException) -> None:
            # Any thread: the SQLite writer's worker too.
            if _damage(failure):
                loop.call_soon_threadsafe(self._check_integrity_again)

        self.database.on_driver_error(heard)
        self._check_integrity_again()

    def _check_integrity_again(self) -> None:
        running = self._integrity is not None and not self._integrity.done()
        if self.sqlite_file is None or running or self._integrity_problem is not None:
            return
        self._integrity = asyncio.create_task(self._check_integrity(self.sqlite_file))

    async def stop(self) -> None:
        connection = self._integrity_connection
        if connection is not None:
            # The check's thread may have closed it meanwhile: nothing left to interrupt.
            with contextlib.suppress(sqlite3.ProgrammingError):
                connection.interrupt()
        for task in (self._integrity, self._refreshing):
            await cancel_and_wait(task)

    async def check(self) -> StorageHealth:
        """The latest finding; a fresh probe if none is younger than ``cache_for``."""
        fresh = time.monotonic() - self._checked_at < self.cache_for
        if self._last is not None and fresh:
            return self._last
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._probe())
        if self._last is not None:
            return self._last  # the fresh probe lands for the next caller
        return await asyncio.shield(self._refreshing)

    async def _probe(self) -> StorageHealth:
        health = StorageHealth(self._integrity_problem or self._space_problem())
        if health.ok:
            health = StorageHealth(await self._write_problem())
        self._report(health)
        self._last, self._checked_at = health, time.monotonic()
        return health

    async def _write_problem(self) -> str | None:
        try:
            async with asyncio.timeout(self.write_timeout):
                await self._beat()
        except TimeoutError:
            return f"writes fail: a write did not commit within {self.write_timeout:g} s"
        except Exception as failure:  # whatever stops the write is what /healthz reports
            return f"writes fail: {_reason(failure)}"
        return None

    async def _beat(self) -> None:
        insert = sqlite_insert if self.database.is_sqlite else postgresql_insert
        now = self.clock.now()
        statement = insert(heartbeats).values(name="healthz", beat_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[heartbeats.c.name], set_={"beat_at": now}
        )
        async with self.database.write() as connection:
            await connection.execute(statement)

    def _space_problem(self) -> str | None:
        if self.sqlite_file is None or self.min_free_bytes <= 0:
            return None
        try:
            stats = os.statvfs(self.sqlite_file.parent)
        except OSError as failure:
            return f"the database's directory cannot be examined: {_reason(failure)}"
        free = stats.f_bavail * stats.f_frsize
        if free >= self.min_free_bytes:
            return None
        return (
            f"disk nearly full: {free / _MIB:.1f} MiB free where the database lives "
            f"(healthz_min_free_bytes is {self.min_free_bytes / _MIB:.1f} MiB)"
        )

    async def _check_integrity(self, path: Path) -> None:
        try:
            problem = await asyncio.to_thread(self._quick_check, path)
        except sqlite3.Error as failure:
            problem = _reason(failure)
        finally:
            self._integrity_connection = None
        if problem is not None:
            self._integrity_problem = f"the database is damaged: {problem}"
            self._checked_at = 0.0  # the next /healthz says so

    def _quick_check(self, path: Path) -> str | None:
        """None if SQLite finds every page sound; else its first complaint."""
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        self._integrity_connection = connection
        try:
            rows = connection.execute("PRAGMA quick_check(1)").fetchall()
        finally:
            self._integrity_connection = None
            connection.close()
        first = " ".join(str(rows[0][0]).split()) if rows else "no answer"
        return None if first == "ok" else first[:200]

    def _report(self, health: StorageHealth) -> None:
        before = self._last
        if before is not None and before.problem == health.problem:
            return
        where = str(self.sqlite_file) if self.sqlite_file else self.database.url.render_as_string()
        if health.ok:
            if before is not None:
                logger.warning("database %s takes writes again", where)
        else:
            logger.error("database %s degraded, /healthz answers 503: %s", where, health.problem)
