"""``name_bindings``: each OIDC name bound to the first ``sub`` seen with it.

Used only when a site keys owners by a name claim (``oidc_owner_claim`` other than ``sub``):
a token whose name is bound to another ``sub`` is refused (execbroker.auth.bindings).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "name_bindings",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_name_bindings")),
    )


def downgrade() -> None:
    op.drop_table("name_bindings")
