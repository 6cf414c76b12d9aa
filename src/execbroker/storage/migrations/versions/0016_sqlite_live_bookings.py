"""SQLite: a partial covering index of the bookings that hold capacity.

A session that ended keeps its booked window, so the covering booking index (0004) makes
every window query of the calendar (``hold_total``, ``holds``) step over each session booked
into the window, ended or not: with 30,000 ended sessions in a window, 15 ms a query
instead of 40 µs, on every request and every direct run (``bench/README.md``). PostgreSQL
has had such an index since 0006. This one holds only live bookings, and covers what the
window queries read.

SQLite uses a partial index only when the query's WHERE clause contains the index's
condition word for word: :mod:`execbroker.storage.queries` adds exactly this term to its
SQLite window queries (``phase || ''``, as there, keeps SQLite off the phase indexes), and
``tests/storage/test_indexes.py`` checks that SQLite plans them on this index.

A later migration that rebuilds ``sessions`` with ``batch_alter_table`` must create this
index again with its ``sqlite_where``.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Sorted, as the queries write them.
_LIVE = ("ACCEPTED", "AVAILABLE", "OFFERED", "PREPARING", "RELEASING", "RUNNING", "WAITING")
_COLUMNS = [
    "book_end",
    "book_start",
    "phase",
    "expires",
    "cores",
    "memory_gib",
    "storage_gib",
    "uuid",
    "releasing",
    "interactive",
    "owner",
    "offer_set_uuid",
]


def _live() -> sa.TextClause:
    phases = ", ".join(f"'{p}'" for p in _LIVE)
    return sa.text(f"(phase || '') IN ({phases}) OR releasing = 1")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_index("ix_sessions_live_booking", "sessions", _COLUMNS, sqlite_where=_live())


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("ix_sessions_live_booking", table_name="sessions")
