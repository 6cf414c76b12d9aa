"""An index on (owner, phase, expires) for per-user quotas, replacing the owner index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_owner")
        batch_op.create_index(
            "ix_sessions_owner_phase", ["owner", "phase", "expires"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_owner_phase")
        batch_op.create_index("ix_sessions_owner", ["owner"], unique=False)
