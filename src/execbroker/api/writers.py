"""Where large answers are written: off the event loop, and for YAML and XML in a worker
process.

Writing a document of thousands of volumes as YAML or XML takes seconds of pure-Python work
(PyYAML's representer runs in Python even with libyaml's emitter). In a thread it would still
hold the GIL and stall every other client for seconds; in a worker process it costs the event
loop only the pickling of the document and of the bytes back. The pool is small (one worker
by default), so that one user asking for huge answers again and again queues behind himself
rather than taking every core. JSON is written by the C encoder, in a thread.

The lifespan starts the pool and stops it; without one (tools, tests that build responses
directly) everything is written in a thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import anyio.to_thread

from execbroker.api.formats import render_body
from execbroker.api.formats.negotiation import MediaFormat

__all__ = ["WRITERS", "BodyWriters"]

logger = logging.getLogger(__name__)


class BodyWriters:
    """Writes large answers off the event loop: JSON in a thread, YAML and XML in a small worker-
    process pool.

    Each ``start`` needs a ``stop``; the pool is created with the first answer that needs it and
    shut down with the last stop.
    """

    def __init__(self, *, workers: int = 1) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._users = 0

    def start(self) -> None:
        """Allow worker processes (one more user of them: each start needs a stop). The
        pool itself starts with the first answer that needs it: most brokers never write
        one, and a spawned worker costs a second of CPU at every start.
        """
        self._users += 1

    def stop(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: the broker runs threads (database, platform); forking them is unsafe.
        return ProcessPoolExecutor(
            max_workers=self._workers, mp_context=multiprocessing.get_context("spawn")
        )

    async def write(self, document: Any, fmt: MediaFormat, *, root: str) -> bytes:
        """``document`` in ``fmt``, written away from the event loop."""
        work = functools.partial(render_body, document, fmt, root=root)
        if self._users == 0 or fmt is MediaFormat.JSON:
            return await anyio.to_thread.run_sync(work)
        if self._pool is None:
            self._pool = self._new_pool()
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work)
        except BrokenProcessPool:
            # A worker died (e.g. killed for memory): start a fresh pool for the next one.
            logger.warning("answer-writing worker died; starting another")
            if self._pool is pool:
                self._pool = self._new_pool()
            return await anyio.to_thread.run_sync(work)


WRITERS = BodyWriters()
