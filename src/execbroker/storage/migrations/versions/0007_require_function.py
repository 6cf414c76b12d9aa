"""PostgreSQL: execbroker_require(ok, what), the check an optimistic booking settles with.

A booking planned without the pool's lock sends, in one round trip, the lock, one
statement of ``execbroker_require(condition, what)`` calls and the commit. The function
fails the statement — and so the commit — unless its condition holds (SQLSTATE EB409).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION execbroker_require(ok boolean, what text)
        RETURNS boolean
        LANGUAGE plpgsql
        VOLATILE
        AS $$
        BEGIN
            IF ok IS NOT TRUE THEN
                RAISE EXCEPTION 'booking no longer valid: % changed', what
                    USING ERRCODE = 'EB409';
            END IF;
            RETURN true;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS execbroker_require(boolean, text)")
