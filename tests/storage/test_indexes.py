"""The calendar's and the quotas' queries are served by indexes of live bookings only.

Sessions that ended keep their booked window; without these indexes every window query on
PostgreSQL steps over each session booked into the window, ended or not — under load, most
of the database's work (``bench/scale.py``).
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from execbroker.model.phases import HOLDING_SESSION_PHASES, SessionPhase
from execbroker.storage import queries
from execbroker.storage.database import Database
from execbroker.storage.sessions import listing_query
from execbroker.storage.tables import sessions

MIGRATION = Path(queries.__file__).parent / "migrations" / "versions" / "0006_holding_indexes.py"


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0006", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_partial_indexes_cover_exactly_the_phases_that_hold_capacity() -> None:
    migration = _migration()
    assert set(migration._HOLDING) == {p.value for p in HOLDING_SESSION_PHASES}
    assert set(migration._LIVE) == {p.value for p in HOLDING_SESSION_PHASES} | {"OFFERED"}


def _plan(connection: Connection, statement: Any, params: dict[str, Any]) -> str:
    compiled = statement.compile(dialect=connection.dialect)
    expanded = compiled.construct_expanded_state(compiled.construct_params(params))
    rows = connection.exec_driver_sql(f"EXPLAIN {expanded.statement}", expanded.parameters)
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_reads_holds_and_active_sessions_from_the_partial_indexes(
    database_url: str,
) -> None:
    database = Database(database_url)
    await database.migrate()
    now = datetime.now(UTC)
    window = queries.window(now, now + timedelta(hours=1), now, None, timedelta(days=8))
    active = sa.select(sa.func.count()).where(
        sessions.c.owner == sa.bindparam("owner"),
        queries.phase_in(sessions.c.phase, HOLDING_SESSION_PHASES),
    )
    try:
        async with database.read() as connection:
            # An empty table is cheapest to scan whole: ask whether the index *can* serve.
            await connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
            holds = await connection.run_sync(_plan, queries.HOLD_TOTAL_PG, window)
            quota = await connection.run_sync(_plan, active, {"owner": "alice"})
    finally:
        await database.dispose()
    assert "ix_sessions_live_booking" in holds, holds
    assert "ix_sessions_owner_holding" in quota, quota


# An admin's listing of one phase reads the phase's index and sorts what it finds instead.
@pytest.mark.parametrize(
    ("owner", "phases"),
    [("alice", []), ("alice", [SessionPhase.COMPLETED]), (None, [])],
    ids=["a user's", "a user's completed", "everyone's"],
)
async def test_a_session_listing_reads_its_index_backwards_and_sorts_nothing(
    tmp_path: Path, owner: str | None, phases: list[SessionPhase]
) -> None:
    """With a user's whole history stored, ``GET /sessions?last=20`` must cost what 20 rows
    cost: SQLite walks the index newest first and stops, instead of sorting every session.
    """
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'listing.db'}")
    await database.migrate()
    listing = listing_query(owner=owner, phases=phases, after=None, last=20)
    try:
        async with database.read() as connection:
            plan = await connection.run_sync(_sqlite_plan, listing)
    finally:
        await database.dispose()
    assert "TEMP B-TREE" not in plan, plan
    assert ("ix_sessions_owner_created" if owner else "ix_sessions_created") in plan, plan


def _sqlite_plan(connection: Connection, statement: Any) -> str:
    literal = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {literal}")
    return "\n".join(str(row[-1]) for row in rows)


async def test_sqlite_reads_the_calendar_from_the_index_of_live_bookings(tmp_path: Path) -> None:
    """A window of the calendar costs what its live bookings cost, not what every session
    ever booked into it costs: SQLite plans both window queries on the partial index, which
    it does only while the queries repeat its condition word for word (migration 0016).
    """
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'calendar.db'}")
    await database.migrate()
    now = datetime.now(UTC)
    window = queries.window(now, now + timedelta(hours=1), now, None, timedelta(days=8))
    try:
        async with database.read() as connection:
            plans = [
                await connection.run_sync(_sqlite_plan, query.params(window))
                for query in (queries._HOLD_TOTAL_SQLITE, queries._HOLDS_SQLITE)
            ]
    finally:
        await database.dispose()
    for plan in plans:
        assert "COVERING INDEX ix_sessions_live_booking" in plan, plan
