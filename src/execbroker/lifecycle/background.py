"""A long-lived loop owned by the app's lifespan: started once, woken on demand, stopped."""

from __future__ import annotations

import abc
import asyncio
import contextlib

__all__ = ["BackgroundLoop"]


class BackgroundLoop(abc.ABC):
    """Runs :meth:`_run` as one task that :meth:`stop` cancels and awaits."""

    name = "execbroker-background"

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sleep(self, seconds: float) -> None:
        """Pause up to ``seconds``, or until woken. Callers clear the wake-up event before
        each pass, so that a wake-up during the pass is not lost."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow our cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    @abc.abstractmethod
    async def _run(self) -> None:
        """The loop; it runs until cancelled."""
