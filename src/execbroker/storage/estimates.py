"""How long preparing steps took: the rows behind the learned estimates.

Each observation is a row of ``preparing_times``. Recording one keeps only the newest
``window`` rows of its key, and returns them, so that the caller's cache of recent
durations follows the database (other replicas' observations included).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy import Connection

from execbroker.model.estimates import EstimateKey, Observation
from execbroker.model.records import ComponentRole
from execbroker.storage.database import Database
from execbroker.storage.tables import preparing_times

__all__ = ["PreparingTimes"]


def _of_key(key: EstimateKey) -> sa.ColumnElement[bool]:
    t = preparing_times.c
    return sa.and_(
        t.platform == key.platform,
        t.role == key.role.value,
        t.kind == key.kind,
        t.image == key.image,
    )


def _recent(connection: Connection, key: EstimateKey, window: int) -> list[float]:
    """The key's newest ``window`` durations, oldest first."""
    t = preparing_times.c
    rows = connection.execute(
        sa.select(t.seconds).where(_of_key(key)).order_by(t.id.desc()).limit(window)
    ).all()
    return [row.seconds for row in reversed(rows)]


def _trim(connection: Connection, key: EstimateKey, window: int) -> None:
    """Delete the key's rows older than its newest ``window``."""
    t = preparing_times.c
    cutoff = connection.execute(
        sa.select(t.id).where(_of_key(key)).order_by(t.id.desc()).offset(window).limit(1)
    ).scalar()
    if cutoff is not None:
        connection.execute(preparing_times.delete().where(_of_key(key), t.id <= cutoff))


class PreparingTimes:
    """The observed preparing times of one database."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(
        self, observations: Sequence[Observation], *, window: int
    ) -> dict[EstimateKey, list[float]]:
        """Add ``observations``; each key they touch keeps its newest ``window`` rows,
        which are returned (oldest first).
        """
        if not observations:
            return {}

        def work(connection: Connection) -> dict[EstimateKey, list[float]]:
            connection.execute(
                preparing_times.insert(),
                [
                    {
                        "platform": o.key.platform,
                        "role": o.key.role.value,
                        "kind": o.key.kind,
                        "image": o.key.image,
                        "seconds": o.seconds,
                        "observed": o.observed,
                    }
                    for o in observations
                ],
            )
            keys = sorted({o.key for o in observations})
            for key in keys:
                _trim(connection, key, window)
            return {key: _recent(connection, key, window) for key in keys}

        return await self._db.run_write(work)

    async def history(self, *, window: int) -> dict[EstimateKey, list[float]]:
        """Every key's newest ``window`` durations, oldest first."""
        t = preparing_times.c

        def work(connection: Connection) -> dict[EstimateKey, list[float]]:
            rows = connection.execute(
                sa.select(t.platform, t.role, t.kind, t.image, t.seconds).order_by(t.id)
            ).all()
            found: dict[EstimateKey, list[float]] = defaultdict(list)
            for row in rows:
                key = EstimateKey(row.platform, ComponentRole(row.role), row.kind, row.image)
                found[key].append(row.seconds)
            return {key: durations[-window:] for key, durations in found.items()}

        return await self._db.run_read(work)
