"""Changes across broker processes on PostgreSQL: LISTEN/NOTIFY on one channel.

Every process listens on ``execbroker_changes`` through its own connection and sends the
UUIDs it changed there, batched (a payload holds up to ~150 UUIDs, well under PostgreSQL's
8000-byte limit), after its own id so that it can ignore its own notifications (its waiters
were woken when the change was made). If the listening connection drops, it reconnects
with backoff; meanwhile the change feed's periodic recheck keeps waiters correct, only
slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import psycopg
from sqlalchemy.engine import URL

from execbroker.background import BackgroundTaskManager

__all__ = ["CHANNEL", "PostgresNotifier"]

logger = logging.getLogger(__name__)

CHANNEL = "execbroker_changes"
_BATCH = 150


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresNotifier:
    """Sends this process's changes to the other brokers and delivers theirs."""

    def __init__(
        self,
        url: URL,
        *,
        deliver: Callable[[UUID], None],
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        self._dsn = _dsn(url)
        # Keepalives: a listener whose link went silent is noticed and reconnected.
        self._connect_args = connect_args or {}
        self._deliver = deliver
        self._sender = uuid4().hex[:12]
        self._outbox: asyncio.Queue[UUID] = asyncio.Queue()
        self._listening = asyncio.Event()

    def send(self, uuid: UUID) -> None:
        """Queue ``uuid`` for the other processes (never blocks the caller)."""
        self._outbox.put_nowait(uuid)

    def start(self, background: BackgroundTaskManager) -> None:
        """Listen and send from now on, as tasks of ``background``."""
        background.spawn("change-listener", self._listen())
        background.spawn("change-sender", self._send())

    async def listening(self, *, within: float = 10) -> None:
        """Return once changes from the others can be heard (serve only then)."""
        async with asyncio.timeout(within):
            await self._listening.wait()

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, **self._connect_args
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    backoff = 0.5
                    async for note in connection.notifies():
                        sender, _, uuids = note.payload.partition(":")
                        if sender == self._sender:
                            continue
                        for text in uuids.split(","):
                            with contextlib.suppress(ValueError):
                                self._deliver(UUID(text))
            except psycopg.Error as problem:
                logger.warning(
                    "change notifications interrupted (%s); reconnecting", type(problem).__name__
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10)

    async def _send(self) -> None:
        connection: psycopg.AsyncConnection[object] | None = None
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < _BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            payload = self._sender + ":" + ",".join(dict.fromkeys(str(u) for u in batch))
            try:
                if connection is None or connection.closed:
                    connection = await psycopg.AsyncConnection.connect(
                        self._dsn, autocommit=True, **self._connect_args
                    )
                await connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except psycopg.Error as problem:
                # The others will see the change at their next recheck.
                logger.warning("change notification not sent (%s)", type(problem).__name__)
                connection = None
                await asyncio.sleep(0.5)
