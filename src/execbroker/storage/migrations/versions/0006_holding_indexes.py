"""PostgreSQL: partial indexes over the sessions that hold capacity.

The calendar's window queries and the active-sessions quota only ever want sessions in a
holding phase (or offered). Sessions that ended keep their booked window, so the full
booking index makes each window query step over every session booked into the window,
ended or not, and the engine's updates churn it. These partial indexes hold only the live
bookings; the first replaces 0004's covering index there (one index fewer to keep up on
every phase change). SQLite keeps the covering index of 0004 (it answers from the index
alone).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported: a migration must not change when the code does.
_HOLDING = ("ACCEPTED", "WAITING", "PREPARING", "AVAILABLE", "RUNNING", "RELEASING")
_LIVE = (*_HOLDING, "OFFERED")


def _phase_in(phases: tuple[str, ...]) -> sa.TextClause:
    return sa.text("phase IN ({})".format(", ".join(f"'{p}'" for p in phases)))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(
        "ix_sessions_live_booking",
        "sessions",
        ["book_end"],
        postgresql_include=[
            "book_start",
            "phase",
            "expires",
            "cores",
            "memory_gib",
            "storage_gib",
            "uuid",
            "offer_set_uuid",
        ],
        postgresql_where=_phase_in(_LIVE),
    )
    op.create_index(
        "ix_sessions_owner_holding", "sessions", ["owner"], postgresql_where=_phase_in(_HOLDING)
    )
    op.drop_index("ix_sessions_booking", table_name="sessions")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(
        "ix_sessions_booking",
        "sessions",
        [
            "book_end",
            "book_start",
            "phase",
            "expires",
            "cores",
            "memory_gib",
            "storage_gib",
            "uuid",
        ],
    )
    op.drop_index("ix_sessions_owner_holding", table_name="sessions")
    op.drop_index("ix_sessions_live_booking", table_name="sessions")
