"""Every long-lived task of one broker process, owned in one place.

:class:`BackgroundTaskManager` is started and stopped by the process context
(:mod:`execbroker.factory`). It runs two kinds of work:

- **Long-lived tasks** (the engine loop, the offer-expiry timer, the change notifier's
  listener and sender, retention, the Skaha token, catalogue and sweep loops): each runs
  until the manager stops. Most are a *pass* repeated by :meth:`~BackgroundTaskManager.loop`:
  run the pass, log a failure with the task's name, pause (or back off), carry on. A
  long-lived task that ends by itself (it raised, or returned) is dead: the manager logs it
  and :meth:`~BackgroundTaskManager.dead` names it, which ``/healthz`` reports.
- **Short-lived work** kept by key in a :class:`TaskGroup` (the container platform's image
  pulls, downloads and container stops, the engine's slow steps): each task ends by itself;
  the group keeps it until then, so that stopping cancels and awaits whatever is left.

There is one stop path, :func:`cancel_and_wait`: cancel, then await, so that nothing is
left running behind the lifespan. This module imports nothing else from the broker, so
that every layer (platforms included) may be handed a manager or a group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any

__all__ = ["BackgroundTaskManager", "TaskGroup", "Wake", "cancel_and_wait"]

logger = logging.getLogger(__name__)

Pass = Callable[[], Awaitable[float]]
"""One pass of a loop; it returns how many seconds to pause before the next (0: at once)."""


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any, and not done) and wait until it has ended.

    How it ended is not raised here: a failure was already logged where it happened.
    """
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class Wake:
    """Wakes a loop early from its pause (e.g. the engine when an offer is accepted).

    The loop clears it before each pass, so that a wake-up during the pass is not lost:
    the pause after that pass then ends at once.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        """Wake the loop now (or end its next pause at once)."""
        self._event.set()

    def clear(self) -> None:
        """Forget earlier wake-ups (the loop is about to look at everything)."""
        self._event.clear()

    async def sleep(self, seconds: float) -> None:
        """Pause up to ``seconds``, or until woken."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow our cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()


class TaskGroup:
    """Short-lived tasks of one owner, each under a key (e.g. a component's UUID).

    A task is kept until it ends; :meth:`forget` drops it once its owner has read how it
    ended (:meth:`get`). :meth:`stop` cancels and awaits whatever is still kept.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}

    def spawn(self, key: Hashable, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` under ``key``, replacing (not cancelling) what was kept under it."""
        task = asyncio.create_task(work, name=f"execbroker-{self.name}-{key}")
        self._tasks[key] = task
        return task

    def get(self, key: Hashable) -> asyncio.Task[Any] | None:
        """The task kept under ``key``, running or ended."""
        return self._tasks.get(key)

    def forget(self, key: Hashable) -> asyncio.Task[Any] | None:
        """Stop keeping the task under ``key`` (it is not cancelled); the task, if any."""
        return self._tasks.pop(key, None)

    async def cancel(self, key: Hashable) -> None:
        """Cancel the task under ``key``, if it still runs, and wait for it to end."""
        task = self._tasks.pop(key, None)
        if task is not None and not task.done():
            await cancel_and_wait(task)

    def __len__(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        """Cancel every task still kept and wait for them all."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class BackgroundTaskManager:
    """Owns the long-lived tasks and the task groups of one broker process."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._groups: list[TaskGroup] = []
        self._dead: dict[str, str] = {}
        self._stopping = False

    # -- starting work ------------------------------------------------------------------

    def spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` until :meth:`stop`; if it ends before that, it is reported dead."""
        if name in self._tasks:
            work.close()
            raise RuntimeError(f"background task {name!r} is already running")
        task = asyncio.create_task(work, name=f"execbroker-{name}")
        self._tasks[name] = task
        task.add_done_callback(lambda ended: self._ended(name, ended))

    def loop(
        self,
        name: str,
        run_pass: Pass,
        *,
        retry: float,
        wake: Wake | None = None,
        first_pause: float = 0.0,
    ) -> None:
        """Repeat ``run_pass`` until :meth:`stop`, pausing as long as each pass says.

        A pass that raises is logged with the task's name, and the next one is tried
        ``retry`` seconds later. ``wake`` ends a pause early; ``first_pause`` delays the
        first pass (for loops whose first pass ran at start-up).
        """
        self.spawn(name, _repeat(name, run_pass, retry=retry, wake=wake, first_pause=first_pause))

    def group(self, name: str) -> TaskGroup:
        """A new group of short-lived tasks, stopped with the manager."""
        made = TaskGroup(name)
        self._groups.append(made)
        return made

    # -- watching and stopping ----------------------------------------------------------

    def dead(self) -> dict[str, str]:
        """The long-lived tasks that ended by themselves, each with how it ended."""
        return dict(self._dead)

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if self._stopping or task.cancelled():
            return
        failure = task.exception()
        why = f"{type(failure).__name__}: {failure}" if failure else "returned"
        self._dead[name] = why
        logger.error("background task died", exc_info=failure, extra={"task": name, "reason": why})

    async def cancel(self, name: str) -> None:
        """Stop one long-lived task (and wait for it); it is not reported dead."""
        task = self._tasks.pop(name, None)
        await cancel_and_wait(task)

    async def stop(self) -> None:
        """Cancel every task and group and wait until all have ended."""
        self._stopping = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for group in self._groups:
            await group.stop()


async def _repeat(
    name: str, run_pass: Pass, *, retry: float, wake: Wake | None, first_pause: float
) -> None:
    """The one loop: pass, log a failure with the task's name, pause, carry on."""
    pause = first_pause
    while True:
        if pause > 0:
            await (wake.sleep(pause) if wake is not None else asyncio.sleep(pause))
        else:
            await asyncio.sleep(0)  # at once, but let the others run first
        # Cleared before the pass, so that a wake-up during it is not lost.
        if wake is not None:
            wake.clear()
        try:
            pause = await run_pass()
        except Exception:
            logger.exception("background pass failed; trying again", extra={"task": name})
            pause = retry
