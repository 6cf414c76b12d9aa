"""Tests that measure how fast something answers run with no other test at the same time.

Under pytest-xdist (``make test`` runs two workers on two cores) every test holds a shared
lock while it runs, and a test marked ``alone`` holds it exclusively: its timings are then
those of a machine busy with that test only, as they were before the suite ran on workers.
A second lock, held only while taking the first, keeps the order of arrival, so that a test
waiting to run alone is not overtaken by the other worker's next tests. In one process
(``-n 0``, or a plain ``pytest``) nothing else runs anyway and no lock is taken. The lock
files are in the run's own temporary folder, which pytest-xdist makes the parent of each
worker's (``--basetemp``), and which pytest removes with old runs.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def turn(config: pytest.Config, *, alone: bool) -> Iterator[None]:
    """Hold this test's turn: shared with the other workers' tests, or ``alone``."""
    if not hasattr(config, "workerinput"):
        yield
        return
    run = Path(config.option.basetemp).parent
    with (run / "turns.gate").open("a") as gate, (run / "turns.lock").open("a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
