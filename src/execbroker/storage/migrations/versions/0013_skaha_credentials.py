"""``skaha_credentials``: each user's Skaha tokens in per-user mode, sealed with Fernet.

One row per account (owner key); ``sealed`` holds the access and refresh tokens encrypted
with ``skaha_credential_key`` (execbroker.platforms.skaha.credentials), never in clear.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "skaha_credentials",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_skaha_credentials")),
    )


def downgrade() -> None:
    op.drop_table("skaha_credentials")
