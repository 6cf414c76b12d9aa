"""Migration 0011: bookings made before it keep counting their notebooks.

A broker upgraded while notebooks are booked must not see their interactive sessions as
free: the migration marks every session whose executable is a jupyter-notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from execbroker.model import kinds
from execbroker.storage import database

WHEN = "2030-01-01 10:00:00.000000"


def _alembic(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(database.__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    return config


def _session(uuid: str) -> dict[str, Any]:
    times = {"created": WHEN, "modified": WHEN, "prepare_start": WHEN, "available_start": WHEN}
    seconds = {"prepare_seconds": 60, "available_seconds": 3600, "release_seconds": 60}
    return {"uuid": uuid, "owner": "alice", "position": 0, "phase": "ACCEPTED", **times, **seconds}


def _insert(connection: sa.Connection, table: str, row: dict[str, Any]) -> None:
    columns = sa.table(table, *(sa.column(name) for name in row))
    connection.execute(columns.insert().values(**row))


def test_sessions_booked_before_keep_counting_their_notebooks(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as connection:
        command.upgrade(_alembic(connection), "0010")
        for uuid, kind in (("nb", kinds.EXECUTABLE_JUPYTER), ("job", kinds.EXECUTABLE_DOCKER)):
            _insert(
                connection,
                "sessions",
                {
                    **_session(uuid),
                    "book_start": WHEN,
                    "book_end": WHEN,
                    "cores": 1,
                    "memory_gib": 1,
                    "storage_gib": 0,
                    "connectors": "[]",
                },
            )
            _insert(
                connection,
                "components",
                {
                    **_session(f"{uuid}-executable"),
                    "session_uuid": uuid,
                    "role": "executable",
                    "name": "run",
                    "kind": kind,
                    "spec": "{}",
                },
            )
        command.upgrade(_alembic(connection), "head")
        rows = connection.execute(sa.text("SELECT uuid, interactive FROM sessions")).all()
        counted: dict[str, int] = {row[0]: row[1] for row in rows}
    engine.dispose()

    assert counted == {"nb": 1, "job": 0}
