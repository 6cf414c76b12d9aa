"""Opening the broker's storage at start: the data directory and the migrated database.

What goes wrong here is an operator's to fix (a read-only or missing directory, a database
file that cannot be opened, a server that cannot be reached), so it is raised as one
:class:`~execbroker.exceptions.StartupError` whose message names the setting, the path and
what is wrong, not as a driver's traceback. ``execbroker serve`` prints it as one line.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path

from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DBAPIError

from execbroker.config import Settings
from execbroker.exceptions import StartupError
from execbroker.storage.database import Database, PostgresLimits

__all__ = ["open_database"]


def _reason(failure: BaseException) -> str:
    """The driver's or the system's own words, on one line."""
    if isinstance(failure, DBAPIError) and failure.orig is not None:
        failure = failure.orig
    if isinstance(failure, OSError) and failure.strerror:
        text = failure.strerror
    else:
        text = str(failure) or type(failure).__name__
    return " ".join(text.split())


def _writable_directory(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # private: see storage.privacy
    except OSError as failure:
        raise StartupError(
            f"data_dir {path} (EXECBROKER_DATA_DIR) cannot be created: {_reason(failure)}"
        ) from failure
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as failure:
        raise StartupError(
            f"data_dir {path} (EXECBROKER_DATA_DIR) is not writable: {_reason(failure)}"
        ) from failure


def _database_named(settings: Settings) -> str:
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        setting = "EXECBROKER_DATABASE_URL" if settings.database.url else "EXECBROKER_DATA_DIR"
        return f"the database file {url.database} ({setting})"
    return f"the database {url.render_as_string(hide_password=True)} (EXECBROKER_DATABASE_URL)"


async def _driver_threads_finished() -> None:
    """Wait for aiosqlite's worker threads to end. A connection that failed to open stops
    its thread without waiting for it (aiosqlite 0.22), and a thread that finishes after
    ``serve``'s check has closed its event loop prints a traceback below our one line.
    """
    for thread in threading.enumerate():
        if thread.name.endswith("(_connection_worker_thread)"):
            await asyncio.to_thread(thread.join, 2.0)


async def open_database(settings: Settings) -> Database:
    """The data directory, created if missing, and the database, migrated to the newest
    schema; a :class:`StartupError` naming the path if either cannot be used.
    """
    _writable_directory(settings.data_dir)
    try:
        database = Database(
            settings.effective_database_url,
            postgres=PostgresLimits(
                statement_timeout=settings.database.statement_timeout.total_seconds(),
                idle_in_transaction_timeout=settings.database.idle_in_transaction_timeout.total_seconds(),
                tcp_timeout=settings.database.tcp_timeout.total_seconds(),
                session_options=settings.database.session_options,
            ),
        )
    except OSError as failure:
        raise StartupError(
            f"{_database_named(settings)} cannot be created: {_reason(failure)}"
        ) from failure
    try:
        await database.migrate()
    except (DBAPIError, OSError) as failure:
        await database.dispose()
        await _driver_threads_finished()
        raise StartupError(
            f"{_database_named(settings)} cannot be opened: {_reason(failure)}"
        ) from failure
    return database
