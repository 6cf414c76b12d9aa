"""Real timings (issue 17): when a component waited in the platform's queue, and the
history of how long preparing steps took (learned estimates).

``components.queued_at`` / ``admitted_at``: when the platform was first seen holding the
component in its queue, and seen admitting it (its preparing budget counts from then).
``preparing_times``: one row per observed preparing step, at most ``estimate_window`` recent
rows per platform, role, kind and image (execbroker.storage.estimates).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("components") as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "preparing_times",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("image", sa.String(500), nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("observed", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preparing_times")),
    )
    op.create_index(
        op.f("ix_preparing_times_key"),
        "preparing_times",
        ["platform", "role", "kind", "image", "id"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_preparing_times_key"), table_name="preparing_times")
    op.drop_table("preparing_times")
    with op.batch_alter_table("components") as batch_op:
        batch_op.drop_column("admitted_at")
        batch_op.drop_column("queued_at")
