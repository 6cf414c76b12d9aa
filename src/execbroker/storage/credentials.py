"""The users' sealed Skaha credentials (per-user mode), one row per account.

Mechanical: rows in and out. The platform seals and opens them
(:mod:`execbroker.platforms.skaha.credentials`); nothing here can read a token.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from execbroker.model.phases import HOLDING_SESSION_PHASES
from execbroker.storage.database import Database
from execbroker.storage.tables import sessions, skaha_credentials

__all__ = ["CredentialRows"]


class CredentialRows:
    """``skaha_credentials`` rows; satisfies the platform's ``CredentialStore``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def load(self) -> dict[str, str]:
        """Every stored account and its sealed credential."""
        async with self._database.read() as connection:
            rows = await connection.execute(
                sa.select(skaha_credentials.c.account, skaha_credentials.c.sealed)
            )
            return {str(account): str(sealed) for account, sealed in rows}

    async def save(self, account: str, sealed: str) -> None:
        """Store ``sealed`` for ``account``, replacing what was there."""
        insert = sqlite_insert if self._database.is_sqlite else postgresql_insert
        values = {"account": account, "sealed": sealed, "updated": datetime.now(UTC)}
        statement = (
            insert(skaha_credentials)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[skaha_credentials.c.account],
                set_={"sealed": values["sealed"], "updated": values["updated"]},
            )
        )
        async with self._database.write() as connection:
            await connection.execute(statement)

    async def delete(self, account: str) -> None:
        """Forget ``account``'s credential."""
        async with self._database.write() as connection:
            await connection.execute(
                sa.delete(skaha_credentials).where(skaha_credentials.c.account == account)
            )

    async def accounts_in_use(self) -> set[str]:
        """Owners with a session that still holds (accepted, running or releasing)."""
        phases = [phase.value for phase in HOLDING_SESSION_PHASES]
        async with self._database.read() as connection:
            rows = await connection.execute(
                sa.select(sessions.c.owner).where(sessions.c.phase.in_(phases)).distinct()
            )
            return {str(owner) for (owner,) in rows}
