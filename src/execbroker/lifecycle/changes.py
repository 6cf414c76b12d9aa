"""Who is waiting for a session to change: long-polls and event streams.

Waiters of one session share a :class:`SessionWatch`: a change wakes them all through one
event, and the first of them to look reads the session for all of them, so that waiting
costs one read per change of a session, not one per waiter. In one process every change is
published here (:meth:`ChangeFeed.publish`); across processes on PostgreSQL, every change is
also sent through ``outbox`` (NOTIFY, :mod:`execbroker.lifecycle.notify`) and changes from
other processes arrive through :meth:`ChangeFeed.deliver`. A watch also reads its session
again once every ``recheck`` seconds while anyone waits on it, one read shared by all its
waiters: a safety net for a change nobody published (another program writing the database,
a lost notification).

Each user may hold at most ``max_per_user`` waiters at once (:meth:`ChangeFeed.admit`);
one more is refused with :class:`~execbroker.exceptions.TooManyWaitersError` (429).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from uuid import UUID

from execbroker.background import Wake
from execbroker.exceptions import TooManyWaitersError
from execbroker.lifecycle.freed import Cause, FreedCapacity
from execbroker.metrics import WAITERS_REFUSED

__all__ = ["ChangeFeed", "SessionChanges", "SessionWatch", "Snapshot", "WaiterSlot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a watch read, and the change count it was read at (see :meth:`SessionWatch.wait`)."""

    version: int
    record: Any


class SessionWatch:
    """The waiters of one session: one wake-up per change, one shared read per change."""

    def __init__(self, uuid: UUID, *, read: Callable[[], Awaitable[Any]], recheck: float) -> None:
        self.uuid = uuid
        self.waiters = 0
        self._read = read
        self._recheck = recheck
        self._version = 0
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._cached: Snapshot | None = None
        self._read_at = 0.0
        self.reads = 0  # how many times the session was read for its waiters (for tests)

    def changed(self) -> None:
        """The session may have changed: wake every waiter; the next read goes to storage."""
        self._version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _stale_in(self) -> float:
        if self._cached is None:
            return 0.0
        return self._read_at + self._recheck - asyncio.get_running_loop().time()

    async def read(self) -> Snapshot:
        """The session as of the latest change, read once for all waiters (a read that fails
        raises in every waiter that asked for it, and the next one tries again).
        """
        async with self._lock:
            cached = self._cached
            if cached is not None and cached.version == self._version and self._stale_in() > 0:
                return cached
            version = self._version  # a change during the read makes the next read fresh
            started = asyncio.get_running_loop().time()
            record = await self._read()
            self.reads += 1
            self._cached, self._read_at = Snapshot(version, record), started
            return self._cached

    async def wait(self, after: Snapshot, seconds: float) -> None:
        """Return once the session changed since ``after`` was read, when the shared read is
        due again (``recheck``), or after ``seconds``, whichever is first.
        """
        if after.version != self._version:
            return
        event = self._changed
        timeout = min(seconds, max(self._stale_in(), 0.0))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()


class WaiterSlot:
    """One of a user's waiters, counted until :meth:`release` (idempotent) or the ``with``
    block ends.
    """

    def __init__(self, feed: ChangeFeed, user: str) -> None:
        self._feed = feed
        self._user = user
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._feed._release(self._user)

    def __enter__(self) -> WaiterSlot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class ChangeFeed:
    """The waiters of this process, by session, and the changes that wake them."""

    def __init__(self, *, recheck: float = 5.0, max_per_user: int | None = None) -> None:
        self.recheck = recheck
        self.max_per_user = max_per_user
        self.outbox: Callable[[UUID], None] | None = None
        self._watches: dict[UUID, SessionWatch] = {}
        self._per_user: Counter[str] = Counter()

    def share(self, *, outbox: Callable[[UUID], None], recheck: float) -> None:
        """Other brokers share the database: send every change through ``outbox`` too, and
        re-read watched sessions every ``recheck`` seconds (their changes may be missed).
        """
        self.outbox = outbox
        self.recheck = recheck

    def publish(self, uuid: UUID) -> None:
        """Wake the waiters of ``uuid`` here, and tell the others: this process changed it."""
        self.deliver(uuid)
        if self.outbox is not None:
            self.outbox(uuid)

    def deliver(self, uuid: UUID) -> None:
        """``uuid`` changed (here or in another process): wake its waiters here."""
        watch = self._watches.get(uuid)
        if watch is not None:
            watch.changed()

    def waiters_of(self, user: str) -> int:
        return self._per_user[user]

    def admit(self, user: str) -> WaiterSlot:
        """Count one more waiter of ``user``, or refuse it when ``user`` holds the most."""
        limit = self.max_per_user
        if limit is not None and self._per_user[user] >= limit:
            WAITERS_REFUSED.inc()
            raise TooManyWaitersError(
                "You already hold {limit} long-polls and event streams, the most one user "
                "may hold at once; close one or try again later",
                {"limit": limit},
            )
        self._per_user[user] += 1
        return WaiterSlot(self, user)

    def _release(self, user: str) -> None:
        self._per_user[user] -= 1
        if self._per_user[user] <= 0:
            del self._per_user[user]

    @contextlib.asynccontextmanager
    async def watch(
        self, uuid: UUID, read: Callable[[], Awaitable[Any]]
    ) -> AsyncIterator[SessionWatch]:
        """Wait on ``uuid`` with everyone else who does; ``read`` reads it (for all of them,
        so it must not depend on who asks: check ownership on what it returns).
        """
        watch = self._watches.get(uuid)
        if watch is None:
            watch = self._watches[uuid] = SessionWatch(uuid, read=read, recheck=self.recheck)
        watch.waiters += 1
        try:
            yield watch
        finally:
            watch.waiters -= 1
            if watch.waiters == 0 and self._watches.get(uuid) is watch:
                del self._watches[uuid]


class SessionChanges:
    """What a service tells the rest of the broker when it has changed a session: its
    waiters (the :class:`ChangeFeed`) and the engine (which has work now) are woken.
    """

    def __init__(
        self, feed: ChangeFeed, *, engine: Wake | None = None, freed: FreedCapacity | None = None
    ) -> None:
        self.feed = feed
        self._engine = engine
        self._freed = freed

    @property
    def freed_total(self) -> int:
        """How many releases of capacity this process has noted (it only grows)."""
        return self._freed.total if self._freed is not None else 0

    def freed(self, cause: Cause, count: int = 1) -> None:
        """A change freed capacity (a cancel, a reject, expired offers): the engine's next
        pass looks for sessions that can move earlier into it.
        """
        if self._freed is not None and count > 0:
            self._freed.freed(cause, count)
            if self._engine is not None:
                self._engine.set()

    def changed(self, uuid: UUID) -> None:
        """``uuid`` changed (an accept, a cancel, an update, a direct run, an expiry)."""
        self.feed.publish(uuid)
        if self._engine is not None:
            self._engine.set()
