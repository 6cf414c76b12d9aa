"""``sessions.interactive``: a booking may hold one of its account's interactive sessions.

Skaha lets one account have at most ``maxInteractiveSessions`` non-headless sessions at once
(Pending or Running), and refuses a create past that. The calendar books them like a
resource: a booking of an interactive session holds 1, counted against its owner's account
in per-user mode and against the one shared account otherwise, so the window queries sum it
by owner. The indexes of live bookings (SQLite's covering one, PostgreSQL's partial one)
take both columns in, so that the queries are still answered from them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported: a migration must not change when the code does.
_LIVE = (
    "ACCEPTED",
    "WAITING",
    "PREPARING",
    "AVAILABLE",
    "RUNNING",
    "RELEASING",
    "OFFERED",
)
_INCLUDE = [
    "book_start",
    "phase",
    "expires",
    "cores",
    "memory_gib",
    "storage_gib",
    "uuid",
    "offer_set_uuid",
    "releasing",
]
_SQLITE_BOOKING = [
    "book_end",
    "book_start",
    "phase",
    "expires",
    "cores",
    "memory_gib",
    "storage_gib",
    "uuid",
    "releasing",
]
_NEW = ["interactive", "owner"]


def _live() -> sa.TextClause:
    phases = ", ".join(f"'{p}'" for p in _LIVE)
    return sa.text(f"phase IN ({phases}) OR releasing")


def _index(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_sessions_live_booking", table_name="sessions")
        op.create_index(
            "ix_sessions_live_booking",
            "sessions",
            ["book_end"],
            postgresql_include=[*_INCLUDE, *columns],
            postgresql_where=_live(),
        )
    else:
        with op.batch_alter_table("sessions", schema=None) as batch_op:
            batch_op.drop_index("ix_sessions_booking")
            batch_op.create_index("ix_sessions_booking", [*_SQLITE_BOOKING, *columns])


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("interactive", sa.Integer, nullable=False, server_default="0")
        )
    # Bookings made before: a live jupyter-notebook session is interactive wherever it runs
    # (on a platform with no limit, counting it changes nothing).
    op.execute(
        "UPDATE sessions SET interactive = 1 WHERE uuid IN ("
        "SELECT session_uuid FROM components "
        "WHERE role = 'executable' AND kind LIKE '%jupyter-notebook%')"
    )
    _index(_NEW)


def downgrade() -> None:
    _index([])
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("interactive")
