"""The docker platform's background work, one task per component: an image pull, a data
download, a container stop.

Calls to the platform return at once (the engine polls); work that takes longer runs here,
kept under its component's UUID until the next poll reads how it ended. :meth:`stop`
cancels and awaits whatever is left, so nothing outlives the platform.

This is the only place the platform touches tasks, so that a process-wide background
manager can take them over by replacing what :class:`ComponentTasks` keeps them in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

__all__ = ["ComponentTasks"]


class ComponentTasks:
    """Background work by component UUID: at most one task kept per component."""

    def __init__(self) -> None:
        self._tasks: dict[UUID, asyncio.Task[None]] = {}

    def spawn(self, uuid: UUID, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` for ``uuid``, replacing (not cancelling) an ended task kept for it."""
        self._tasks[uuid] = asyncio.create_task(work, name=f"docker-{uuid}")

    def busy(self, uuid: UUID) -> bool:
        """Whether work for ``uuid`` is still running."""
        task = self._tasks.get(uuid)
        return task is not None and not task.done()

    def finished(self, uuid: UUID) -> tuple[bool, BaseException | None]:
        """Whether work for ``uuid`` ran and ended (and how), forgetting it."""
        task = self._tasks.get(uuid)
        if task is None or not task.done():
            return False, None
        del self._tasks[uuid]
        if task.cancelled():
            return True, None
        return True, task.exception()

    async def cancel(self, uuid: UUID) -> None:
        """Cancel the work for ``uuid``, if it still runs, and wait for it to end."""
        task = self._tasks.pop(uuid, None)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every task still kept and wait for them all."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
