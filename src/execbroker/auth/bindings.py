"""Names bound to the first ``sub`` seen with them, for sites that key owners by a name.

By default the owner key of an OIDC caller is the token's ``sub``, which the issuer never
reassigns. A site may instead key owners by a name claim (``oidc_owner_claim``, e.g.
``preferred_username`` to keep records made by an older broker). A name is not unique over
time at every issuer (OIDC Core §5.1: "The RP MUST NOT rely upon this value being unique"),
so the broker binds each name to the first ``sub`` it sees with it, in the database
(``name_bindings``), and refuses any other ``sub`` with that name: a second person given a
recycled or self-chosen name reads nothing of the first one's and inherits no admin rights.

Bindings never change once made, so each is cached after its first read; an operator who
must rebind a name (a person's account was recreated at the issuer) deletes its row and
restarts the broker (docs/security.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from execbroker.exceptions import UnauthorizedError
from execbroker.storage.database import Database
from execbroker.storage.tables import name_bindings

__all__ = ["NameBindings"]

_CACHED = 10_000


class NameBindings:
    """``check(name, subject)`` passes when ``name`` is ``subject``'s (binding it if new)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._known: dict[str, str] = {}

    async def check(self, name: str, subject: str) -> None:
        owner = self._known.get(name)
        if owner is None:
            owner = await self._bind(name, subject)
            if len(self._known) >= _CACHED:
                self._known.clear()
            self._known[name] = owner
        if owner != subject:
            raise UnauthorizedError(
                "The name {name} belongs to another account of the identity provider (another "
                "sub) on this broker; a name is bound to the first account seen with it",
                {"name": name},
                invalid_token=True,
            )

    async def _bind(self, name: str, subject: str) -> str:
        """The ``sub`` ``name`` is bound to: the stored one, else ``subject`` from now."""
        async with self._database.read() as connection:
            owner = await connection.scalar(
                sa.select(name_bindings.c.subject).where(name_bindings.c.name == name)
            )
        if owner is not None:
            return str(owner)
        insert = sqlite_insert if self._database.is_sqlite else postgresql_insert
        statement = (
            insert(name_bindings)
            .values(name=name, subject=subject, first_seen=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=[name_bindings.c.name])
        )
        async with self._database.write() as connection:
            await connection.execute(statement)
            # Another replica or request may have bound it first: the stored row wins.
            owner = await connection.scalar(
                sa.select(name_bindings.c.subject).where(name_bindings.c.name == name)
            )
        return str(owner)
