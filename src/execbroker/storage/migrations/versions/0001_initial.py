"""offer sets, sessions, components and messages

Revision ID: 0001
Revises:
Create Date: 2026-11-28 07:29:01.836629
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subject_uuid", sa.String(length=36), nullable=False),
        sa.Column("session_uuid", sa.String(length=36), nullable=True),
        sa.Column("offer_set_uuid", sa.String(length=36), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=255), nullable=True),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column(
            "values",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_messages_offer_set_uuid"), ["offer_set_uuid"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_messages_session_uuid"), ["session_uuid"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_messages_subject_uuid"), ["subject_uuid"], unique=False
        )

    op.create_table(
        "offer_sets",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("result", sa.String(length=3), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "request",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("accepted_session", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_offer_sets")),
    )
    with op.batch_alter_table("offer_sets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_offer_sets_owner"), ["owner"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("offer_set_uuid", sa.String(length=36), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prepare_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prepare_seconds", sa.Float(), nullable=False),
        sa.Column("available_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_seconds", sa.Float(), nullable=False),
        sa.Column("release_seconds", sa.Float(), nullable=False),
        sa.Column("book_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("book_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("memory_gib", sa.Integer(), nullable=False),
        sa.Column("storage_gib", sa.Integer(), nullable=False),
        sa.Column(
            "connectors",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["offer_set_uuid"],
            ["offer_sets.uuid"],
            name=op.f("fk_sessions_offer_set_uuid_offer_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sessions_offer_set_uuid"), ["offer_set_uuid"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sessions_owner"), ["owner"], unique=False)
        batch_op.create_index("ix_sessions_phase_expires", ["phase", "expires"], unique=False)

    op.create_table(
        "components",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("session_uuid", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=255), nullable=False),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prepare_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prepare_seconds", sa.Float(), nullable=False),
        sa.Column("available_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_seconds", sa.Float(), nullable=False),
        sa.Column("release_seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_uuid"],
            ["sessions.uuid"],
            name=op.f("fk_components_session_uuid_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_components")),
    )
    with op.batch_alter_table("components", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_components_session_uuid"), ["session_uuid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("components", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_components_session_uuid"))

    op.drop_table("components")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_phase_expires")
        batch_op.drop_index(batch_op.f("ix_sessions_owner"))
        batch_op.drop_index(batch_op.f("ix_sessions_offer_set_uuid"))

    op.drop_table("sessions")
    with op.batch_alter_table("offer_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offer_sets_owner"))

    op.drop_table("offer_sets")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_subject_uuid"))
        batch_op.drop_index(batch_op.f("ix_messages_session_uuid"))
        batch_op.drop_index(batch_op.f("ix_messages_offer_set_uuid"))

    op.drop_table("messages")
