"""A glance (the fast lane's "is my cached answer still current?") sees every commit.

On SQLite the broker keeps a glance's rows until something is committed to the file, by
any connection of any process. A cached answer served after a change it missed would show
a client a session as it no longer is, so each kind of writer is tried: the broker's own
writer, another connection in the process, and another process (an operator's script).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import sqlalchemy as sa

from execbroker.storage.database import Database
from execbroker.storage.tables import heartbeats

GLANCE = "SELECT name, beat_at FROM heartbeats ORDER BY name"


async def _database(tmp_path: Path) -> tuple[Database, Path]:
    path = tmp_path / "glance.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.migrate()
    return database, path


BEAT = "INSERT OR REPLACE INTO heartbeats (name, beat_at) VALUES (?, ?)"


async def test_a_glance_sees_the_brokers_own_commits(tmp_path: Path) -> None:
    database, _ = await _database(tmp_path)
    assert database.glance_sql(GLANCE, ()) == []
    assert database.glance_sql(GLANCE, ()) == []  # read again with nothing committed

    def write(connection: sa.Connection) -> None:
        connection.exec_driver_sql(BEAT, ("a", "2030-01-01 10:00:00.000000"))

    await database.run_write(write)
    assert database.glance_sql(GLANCE, ()) == [("a", "2030-01-01 10:00:00.000000")]

    async with database.write() as connection:  # the other write path (aiosqlite)
        await connection.execute(
            heartbeats.update().where(heartbeats.c.name == "a").values(name="b")
        )
    assert database.glance_sql(GLANCE, ()) == [("b", "2030-01-01 10:00:00.000000")]
    await database.dispose()


async def test_a_glance_sees_commits_by_other_connections_and_processes(tmp_path: Path) -> None:
    database, path = await _database(tmp_path)
    assert database.glance_sql(GLANCE, ()) == []

    with sqlite3.connect(path) as other:  # another connection in this process
        other.execute(BEAT, ("a", "2030-01-01 10:00:00.000000"))
    assert database.glance_sql(GLANCE, ()) == [("a", "2030-01-01 10:00:00.000000")]

    script = (
        "import sqlite3, sys\n"
        "with sqlite3.connect(sys.argv[1]) as c:\n"
        f"    c.execute({BEAT!r}, sys.argv[2:])\n"
    )
    other_process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(path), "a", "2030-01-01 11:00:00.000000"
    )
    assert await other_process.wait() == 0
    assert database.glance_sql(GLANCE, ()) == [("a", "2030-01-01 11:00:00.000000")]

    # A transaction still open elsewhere is not seen, and is seen once committed.
    pending = sqlite3.connect(path, isolation_level=None)
    pending.execute("BEGIN IMMEDIATE")
    pending.execute(BEAT, ("c", "2030-01-01 12:00:00.000000"))
    assert database.glance_sql(GLANCE, ()) == [("a", "2030-01-01 11:00:00.000000")]
    pending.execute("COMMIT")
    pending.close()
    assert database.glance_sql(GLANCE, ()) == [
        ("a", "2030-01-01 11:00:00.000000"),
        ("c", "2030-01-01 12:00:00.000000"),
    ]
    await database.dispose()


async def test_the_rows_a_glance_returns_are_the_callers_to_keep(tmp_path: Path) -> None:
    database, _ = await _database(tmp_path)

    def write(connection: sa.Connection) -> None:
        connection.exec_driver_sql(BEAT, ("a", "2030-01-01 10:00:00.000000"))

    await database.run_write(write)
    first = database.glance_sql(GLANCE, ())
    assert first is not None
    first.clear()  # a caller that changes what it was given changes nothing kept
    assert database.glance_sql(GLANCE, ()) == [("a", "2030-01-01 10:00:00.000000")]
    await database.dispose()
