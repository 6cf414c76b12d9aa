"""The lifecycle engine: workers that claim due sessions, advance them, and commit.

Every pending action lives in the database as a due time (``sessions.next_due``, and
``components.due`` for each component's own next action). The engine claims due sessions
in batches with a lease, runs :func:`~execbroker.lifecycle.apply.advance` on each of them
concurrently (platform calls included), and commits the results in one transaction.
A failure in one session is logged with its id and retried later; it never holds up the
rest. Nothing sleeps inside a step: a step that has to wait says when to come back.

A slow platform cannot stall the others either. A pass waits ``step_deadline`` for its
steps, commits those that finished, and lets the slow ones go on in the background: each
commits on its own when its platform calls return. It still holds its session's claim
then: every platform call has a deadline (``EngineTimings.call_deadline``, at most half the
lease), and the whole step has one too (half the lease, counted from its claim), past which
it makes no platform call and leaves the rest to a later pass. So a step never outlives its
claim, and no other broker takes the session over while a step of this one still acts on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from execbroker.background import TaskGroup, Wake
from execbroker.clock import Clock
from execbroker.lifecycle.apply import advance
from execbroker.lifecycle.changes import ChangeFeed
from execbroker.lifecycle.freed import Cause, FreedCapacity
from execbroker.lifecycle.learning import observations
from execbroker.lifecycle.rules import EngineTimings
from execbroker.metrics import ENGINE_PASSES, LATE_STEPS, STEP_DURATION, STEP_LATENESS
from execbroker.model.advance import Advance
from execbroker.model.estimates import Observation
from execbroker.model.phases import (
    TERMINAL_COMPONENT_PHASES,
    TERMINAL_SESSION_PHASES,
    SessionPhase,
    derive_session_phase,
    still_releasing,
)
from execbroker.model.records import SessionRecord
from execbroker.platforms.base import Platform
from execbroker.storage.store import BrokerStore

__all__ = ["Engine", "Learn"]

Learn = Callable[[list[Observation]], Awaitable[None]]
"""Takes how long the steps a pass brought up took to prepare (the learned estimates)."""

Backfill = Callable[[], Awaitable[int]]
"""Moves waiting sessions earlier into capacity freed since it last ran; how many moved."""

_FREED_BY = {
    SessionPhase.COMPLETED: Cause.ENDED_EARLY,
    SessionPhase.FAILED: Cause.FAILED,
    SessionPhase.CANCELLED: Cause.CANCELLED,
}

logger = logging.getLogger(__name__)


class Engine:
    """Advances due sessions. The background manager repeats :meth:`run_pass` (waking it
    through :attr:`wake`); tests call :meth:`run_once` on a manual clock.
    """

    def __init__(
        self,
        *,
        store: BrokerStore,
        platform: Platform,
        clock: Clock,
        changes: ChangeFeed,
        timings: EngineTimings,
        late_steps: TaskGroup,
        batch_size: int = 200,
        batch_window: float = 0.0,
        lease: timedelta = timedelta(seconds=60),
        idle: float = 1.0,
        retry: timedelta = timedelta(seconds=5),
        single_process: bool = True,
        step_deadline: float | None = 2.0,
        learn: Learn | None = None,
        freed: FreedCapacity | None = None,
    ) -> None:
        self.wake = Wake()
        # What ended sessions free is noted here; the backfill (if the broker moves
        # sessions earlier) runs at the end of each pass that freed something.
        self.freed = freed or FreedCapacity()
        self.backfill: Backfill | None = None
        self._store = store
        self._platform = platform
        self._clock = clock
        self._changes = changes
        self._timings = timings
        self._batch_size = batch_size
        self._batch_window = batch_window
        self._lease = lease
        self._idle = idle
        self._retry = retry
        self._single_process = single_process
        self._step_deadline = step_deadline
        self._late = late_steps
        self._learn = learn
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"

    async def reconcile(self) -> None:
        """Before serving: resume what the database says is under way, and release what
        the platform has that no live component owns.
        """
        if self._single_process:
            released = await self._store.claims.release_all()
            if released:
                logger.info("claims of a previous run released", extra={"count": released})
        live = await self._platform.objects()
        phases = await self._store.claims.component_phases(live)
        for uuid in live:
            phase = phases.get(uuid)
            if phase is None or phase in TERMINAL_COMPONENT_PHASES:
                logger.warning("releasing orphaned platform object", extra={"component": str(uuid)})
                await self._platform.release_orphan(uuid)
        # From now on the platform sweeps orphans and duplicates itself (issue 22, item 3).
        self._platform.sweep_periodically(self._store.claims.component_phases)

    def poke(self) -> None:
        """Something is due now (an accept, a cancel, a direct run)."""
        self.wake.set()

    async def run_once(self) -> int:
        """Claim one batch of due sessions, advance and commit them, and move waiting
        sessions earlier into what they freed; how many sessions it took up (or, when none
        was due, how many moved).
        """
        return (await self._pass())[0]

    async def _pass(self) -> tuple[int, datetime | None]:
        """One pass: how many sessions it took up, and when the next step nobody holds is
        due (None: nothing is).
        """
        now = self._clock.now()
        batch = await self._store.claims.claim_due(
            worker=self.worker, now=now, lease_until=now + self._lease, limit=self._batch_size
        )
        if not batch:
            moved = await self._backfill()
            return moved, await self._store.claims.next_step_due(now=now)
        ENGINE_PASSES.observe(len(batch))
        steps = [asyncio.ensure_future(self._advance(session, now)) for session in batch]
        done, slow = await asyncio.wait(steps, timeout=self._step_deadline)
        advances = [step.result() for step in steps if step in done]
        written, upcoming = await self._store.claims.commit_advances(
            advances, worker=self.worker, now=now
        )
        for uuid in written:
            self._changes.publish(uuid)
        self._note_freed(advances, written)
        for step, session in zip(steps, batch, strict=True):
            if step in slow:
                self._late.spawn(step, self._commit_late(step, session))
        await self._learn_from(batch, advances, written, now)
        if await self._backfill():
            upcoming = now  # the sessions that moved are due: look at them at once
        return len(batch), upcoming

    def _note_freed(self, advances: Sequence[Advance], written: Sequence[UUID]) -> None:
        """Sessions these committed advances ended (and released) free their bookings."""
        committed = set(written)
        for done in advances:
            if (
                done.session_uuid in committed
                and done.phase in TERMINAL_SESSION_PHASES
                and not done.releasing
            ):
                self.freed.freed(_FREED_BY.get(done.phase, Cause.ENDED_EARLY))

    async def _backfill(self) -> int:
        """The backfill, if anything was freed; a failure is logged and tried again on the
        next pass (it never holds up the engine).
        """
        if self.backfill is None or not self.freed.pending():
            return 0
        try:
            return await self.backfill()
        except Exception:
            logger.exception("moving sessions earlier failed; trying again on the next pass")
            return 0

    async def _commit_late(self, step: asyncio.Future[Advance], session: SessionRecord) -> None:
        """A step that outlived its pass's deadline commits on its own when it is done."""
        LATE_STEPS.inc()
        try:
            await self._commit_step(step, session)
        finally:
            self._late.forget(step)

    async def _commit_step(self, step: asyncio.Future[Advance], session: SessionRecord) -> None:
        try:
            found = await step
            written, _ = await self._store.claims.commit_advances(
                [found], worker=self.worker, now=self._clock.now()
            )
        except Exception:
            logger.exception("committing a slow step failed; its lease will run out")
            return
        for uuid in written:
            self._changes.publish(uuid)
        self._note_freed([found], written)
        await self._learn_from([session], [found], written, self._clock.now())
        self.poke()

    async def _learn_from(
        self,
        sessions: Sequence[SessionRecord],
        advances: Sequence[Advance],
        written: Sequence[UUID],
        now: datetime,
    ) -> None:
        """Record how long the steps these committed advances brought up took to prepare."""
        if self._learn is None:
            return
        committed = set(written)
        by_uuid = {s.uuid: s for s in sessions}
        found = [
            seen
            for advance in advances
            if advance.session_uuid in committed and advance.session_uuid in by_uuid
            for seen in observations(
                by_uuid[advance.session_uuid], advance, platform=self._platform.name, now=now
            )
        ]
        if not found:
            return
        try:
            await self._learn(found)
        except Exception:
            logger.exception("recording preparing times failed; the estimates stay as they were")

    async def _advance(self, session: SessionRecord, now: datetime) -> Advance:
        if session.next_due is not None:
            STEP_LATENESS.observe(max(0.0, (now - session.next_due).total_seconds()))
        started = time.perf_counter()
        try:
            return await advance(
                session,
                self._platform,
                now=now,
                timings=self._timings,
                clock=self._clock,
                budget=self._lease / 2,  # the rest of the lease is for committing
            )
        except Exception:
            logger.exception(
                "engine step failed; retrying later", extra={"session": str(session.uuid)}
            )
            return Advance(
                session_uuid=session.uuid,
                revision=session.revision,
                releasing=still_releasing(session.ending, [c.phase for c in session.components]),
                phase=derive_session_phase(
                    seen=session.seen,
                    ending=session.ending,
                    components=[(c.role, c.phase) for c in session.components],
                )
                if session.seen
                else session.phase,
                next_due=now + self._retry,
                ending=session.ending,
                warned=session.warned,
                connectors=session.connectors,
                components=[],
            )
        finally:
            STEP_DURATION.observe(time.perf_counter() - started)

    async def run_pass(self) -> float:
        """One pass of the engine's loop; seconds until the next is due (0: at once)."""
        taken, upcoming = await self._pass()
        if taken >= self._batch_size:
            return 0.0  # more may be due: no pause
        pause = self._idle
        if upcoming is not None:
            until = (upcoming - self._clock.now()).total_seconds()
            pause = min(self._idle, max(until, 0.01))
        if self._batch_window:
            # Not woken early: what falls due meanwhile is taken in one pass.
            await asyncio.sleep(min(self._batch_window, pause))
            pause -= self._batch_window
        return max(pause, 0.0)

    @property
    def idle(self) -> float:
        """Seconds between passes when nothing is due (and after a failed pass)."""
        return self._idle
