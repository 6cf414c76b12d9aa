"""A cancel is final at once: ``sessions.releasing`` keeps its booking while it releases.

A session the user (or a preparing budget) cancelled is CANCELLED from that moment, as the
reference broker answers; its components are still being released, and until they are its
booking holds the pool's capacity. ``releasing`` says so, and the calendar counts it:
``phase IN (holding) OR (phase = 'OFFERED' AND expires > now) OR releasing``. The indexes of
live bookings (SQLite's covering one, PostgreSQL's partial one) take it in. Sessions that
were RELEASING after a cancel move to CANCELLED now.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
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
]


def _live(extra: str) -> sa.TextClause:
    phases = ", ".join(f"'{p}'" for p in _LIVE)
    return sa.text(f"phase IN ({phases}){extra}")


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("releasing", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE sessions SET phase = 'CANCELLED', releasing = true "
        "WHERE phase = 'RELEASING' AND ending = 'CANCELLED'"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_sessions_live_booking", table_name="sessions")
        op.create_index(
            "ix_sessions_live_booking",
            "sessions",
            ["book_end"],
            postgresql_include=[*_INCLUDE, "releasing"],
            postgresql_where=_live(" OR releasing"),
        )
    else:
        with op.batch_alter_table("sessions", schema=None) as batch_op:
            batch_op.drop_index("ix_sessions_booking")
            batch_op.create_index("ix_sessions_booking", [*_SQLITE_BOOKING, "releasing"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_sessions_live_booking", table_name="sessions")
        op.create_index(
            "ix_sessions_live_booking",
            "sessions",
            ["book_end"],
            postgresql_include=_INCLUDE,
            postgresql_where=_live(""),
        )
    else:
        with op.batch_alter_table("sessions", schema=None) as batch_op:
            batch_op.drop_index("ix_sessions_booking")
            batch_op.create_index("ix_sessions_booking", _SQLITE_BOOKING)
    op.execute("UPDATE sessions SET phase = 'RELEASING' WHERE phase = 'CANCELLED' AND releasing")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("releasing")
