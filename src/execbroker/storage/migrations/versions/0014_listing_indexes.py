"""Indexes that match the listings: a user's sessions and offer sets newest first, and
everyone's sessions (admins).

``GET /sessions`` and ``GET /offersets`` order by ``created`` then ``uuid``, newest first,
within an owner; without an index in that order they read and sorted every record the user
ever had, so a listing grew slower with history (``bench/http.py``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sessions_owner_created", ["owner", "created", "uuid"], unique=False
        )
        batch_op.create_index("ix_sessions_created", ["created", "uuid"], unique=False)
    with op.batch_alter_table("offer_sets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_offer_sets_owner_created", ["owner", "created", "uuid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("offer_sets", schema=None) as batch_op:
        batch_op.drop_index("ix_offer_sets_owner_created")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_created")
        batch_op.drop_index("ix_sessions_owner_created")
