"""The docker platform's background work, one task per component: an image pull, a data
download, a container stop.

Calls to the platform return at once (the engine polls); work that takes longer runs here,
kept under its component's UUID until the next poll reads how it ended. The tasks live in a
:class:`~execbroker.background.TaskGroup` of the process's background manager, which
cancels and awaits whatever is left when it stops (and so does :meth:`stop`), so nothing
outlives the platform.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any
from uuid import UUID

from execbroker.background import TaskGroup

__all__ = ["ComponentTasks"]


class ComponentTasks:
    """Background work by component UUID: at most one task kept per component."""

    def __init__(self, group: TaskGroup) -> None:
        self._group = group

    def spawn(self, uuid: UUID, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` for ``uuid``, replacing (not cancelling) an ended task kept for it."""
        self._group.spawn(uuid, work)

    def busy(self, uuid: UUID) -> bool:
        """Whether work for ``uuid`` is still running."""
        task = self._group.get(uuid)
        return task is not None and not task.done()

    def finished(self, uuid: UUID) -> tuple[bool, BaseException | None]:
        """Whether work for ``uuid`` ran and ended (and how), forgetting it."""
        task = self._group.get(uuid)
        if task is None or not task.done():
            return False, None
        self._group.forget(uuid)
        if task.cancelled():
            return True, None
        return True, task.exception()

    async def cancel(self, uuid: UUID) -> None:
        """Cancel the work for ``uuid``, if it still runs, and wait for it to end."""
        await self._group.cancel(uuid)

    async def stop(self) -> None:
        """Cancel every task still kept and wait for them all."""
        await self._group.stop()
