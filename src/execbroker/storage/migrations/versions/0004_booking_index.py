"""A covering index for the calendar's window queries, replacing the book_end index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = [
    "book_end",
    "book_start",
    "phase",
    "expires",
    "cores",
    "memory_gib",
    "storage_gib",
    "uuid",
]


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_book_end")
        batch_op.create_index("ix_sessions_booking", _COLUMNS, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_booking")
        batch_op.create_index("ix_sessions_book_end", ["book_end"], unique=False)
