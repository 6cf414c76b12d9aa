"""Bookings that move earlier (issue 19): what each accepted session may do when capacity
frees up, and the order in which sessions are offered that capacity.

``sessions.moves_earlier``: the session may start earlier than its accepted start when the
calendar allows (direct runs, containers, notebooks that asked); ``earliest_start``: the
earliest start its request allows (its start interval's beginning); ``promised_start``:
the start it was offered (it never starts later); ``accepted_at``: when it was accepted
(first come, first served). The index finds the accepted sessions that have not begun.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("moves_earlier", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("earliest_start", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("promised_start", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_sessions_phase_book_start", ["phase", "book_start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_phase_book_start")
        batch_op.drop_column("accepted_at")
        batch_op.drop_column("promised_start")
        batch_op.drop_column("earliest_start")
        batch_op.drop_column("moves_earlier")
