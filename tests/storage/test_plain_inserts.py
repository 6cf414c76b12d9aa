"""Rows inserted straight to the SQLite driver are stored exactly as SQLAlchemy stores them.

Instants are compared as text on SQLite (expiry, listings, the calendar): a row written in
another format would sort wrongly against every other row, so each stored value must be
byte-for-byte what the usual insert writes, and read back as the same record.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from execbroker.storage.database import Database
from execbroker.storage.plain import insert_rows
from execbroker.storage.tables import messages, offer_sets

WHOLE_SECOND = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
ELSEWHERE = timezone(timedelta(hours=-5))


def _offer_set(index: int, request: Any) -> dict[str, Any]:
    return {
        "uuid": f"00000000-0000-0000-0000-{index:012d}",
        "owner": "alice",
        "result": "YES",
        # No microseconds (isoformat would drop them), and a zone that is not UTC.
        "created": WHOLE_SECOND,
        "modified": datetime(2030, 1, 1, 5, 0, 0, 250, tzinfo=ELSEWHERE),
        "request": request,
    }


def _message(index: int) -> dict[str, Any]:
    return {
        "subject_uuid": f"00000000-0000-0000-0000-{index:012d}",
        "session_uuid": None,
        "offer_set_uuid": f"00000000-0000-0000-0000-{index:012d}",
        "time": WHOLE_SECOND + timedelta(microseconds=index),
        "level": "INFO",
        "kind": None,
        "template": "Offered {n}",
        "values": {"n": index, "nested": [1, "two", None]},
        "message": f"Offered {index}",
    }


async def _stored(tmp_path: Path, name: str, *, plain: bool) -> dict[str, list[tuple[Any, ...]]]:
    path = tmp_path / f"{name}.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.migrate()
    # A request document, none (JSON null, not SQL NULL), and one row alone.
    sets = [_offer_set(1, {"executable": {"name": "é"}}), _offer_set(2, None)]
    notes = [_message(1), _message(2), _message(3)]

    def write(connection: sa.Connection) -> None:
        if plain:
            insert_rows(connection, offer_sets, sets)
            insert_rows(connection, offer_sets, [_offer_set(3, {"a": 1.5})])
            insert_rows(connection, messages, notes)
        else:
            connection.execute(offer_sets.insert(), sets)
            connection.execute(offer_sets.insert(), [_offer_set(3, {"a": 1.5})])
            connection.execute(messages.insert(), notes)

    await database.run_write(write)

    def read(connection: sa.Connection) -> list[Any]:
        return list(connection.execute(sa.select(offer_sets).order_by(offer_sets.c.uuid)))

    records = await database.run_read(read)
    await database.dispose()
    with sqlite3.connect(path) as raw:
        return {
            "offer_sets": raw.execute("SELECT * FROM offer_sets ORDER BY uuid").fetchall(),
            "messages": raw.execute("SELECT * FROM messages ORDER BY id").fetchall(),
            "records": [tuple(r) for r in records],
        }


async def test_plain_inserts_store_and_read_back_what_sqlalchemy_does(tmp_path: Path) -> None:
    usual = await _stored(tmp_path, "usual", plain=False)
    plain = await _stored(tmp_path, "plain", plain=True)
    assert plain == usual
    # What the comparison rests on: instants as naive UTC text with microseconds.
    assert usual["offer_sets"][0][3] == "2030-01-01 10:00:00.000000"
    assert usual["offer_sets"][0][4] == "2030-01-01 10:00:00.000250"
    assert plain["records"][1][5] is None  # the JSON null reads back as None
    assert plain["records"][0][3] == WHOLE_SECOND


async def test_a_naive_instant_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'naive.db'}")
    await database.migrate()
    naive = {**_offer_set(1, None), "created": datetime(2030, 1, 1, 10, 0)}  # noqa: DTZ001
    # The row before it has the same wall time, aware: its remembered conversion must not
    # answer for the naive one.
    assert _offer_set(2, None)["created"].replace(tzinfo=None) == naive["created"]

    def write(connection: sa.Connection) -> None:
        insert_rows(connection, offer_sets, [_offer_set(2, None), naive])

    with pytest.raises(ValueError, match="naive"):
        await database.run_write(write)

    def count(connection: sa.Connection) -> int:
        return int(
            connection.execute(sa.select(sa.func.count()).select_from(offer_sets)).scalar_one()
        )

    assert await database.run_read(count) == 0
    await database.dispose()
