"""Freed capacity reused: pool utilisation and waits with moves, without, and an ideal queue.

A seeded synthetic workload of direct runs of mixed sizes and booked durations, each of
which ends early, at a random fraction of its booking (``MOCK_RUN_SECONDS``). Three ways of
running it on a pool of ``--cores`` cores:

- **with moves**: a real broker (``python -m execbroker serve``, SQLite in a temporary
  directory, the mock platform with no prepare or release delay), driven over HTTP by
  ``POST /direct`` at each job's arrival, with ``EXECBROKER_BACKFILL=true``: a booking that
  frees capacity early lets waiting sessions move earlier;
- **without moves**: the same broker with ``EXECBROKER_BACKFILL=false``: every session
  keeps the start it was given when it was booked;
- **ideal FCFS**: a first-come-first-served queue with perfect knowledge, simulated here: a
  job starts as soon as it is first in the queue and enough cores are free, and holds them
  for exactly its true run time (no booking, no estimate, no engine latency).

For the broker, everything is measured from its own records, read once all runs have
ended from ``GET /admin/calendar`` (the script's user is made an administrator): each
session's *used* span (from the start of its compute on the platform to the end of its
release) and its cores.

- **Utilisation** = core-seconds used / (pool cores x makespan); the makespan runs from the
  first job's arrival to the last run's end. ``used`` is the broker's measure (what the
  platform held, engine latency included); ``work`` counts only the runs' true time (the
  same numerator for all three), so it cannot be raised by holding cores longer.
- **Wait** = a run's start (its compute started) minus its arrival (the moment the client
  sent ``POST /direct``); mean and 95th percentile.

For reference it also simulates **ideal backfill**: conservative backfill (as the broker's
calendar plans) with perfect knowledge, i.e. bookings exactly as long as the runs.

Target: utilisation with moves ≥ 0.9 x the ideal queue's (work-based, the stricter of the
two: with it the broker's own measure passes too). Prints PASS or FAIL.

Before the broker has the ``backfill`` setting (issue 19's moves), "with moves" runs the
same broker as "without" and says so.

    .venv/bin/python bench/backfill.py                    # 20 jobs, 8 cores, seed 19
    .venv/bin/python bench/backfill.py --jobs 30 --scale 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.lifecycle import ZERO_DELAY
from tests.support.live import LiveBroker
from tests.support.wire import example

from execbroker.config import setting_fields

# Sizes and booked durations, drawn with these weights.
CORES = {1: 0.30, 2: 0.35, 4: 0.25, 8: 0.10}
BOOKED_SECONDS = (6, 12, 20, 30)
TARGET = 0.9


@dataclass(frozen=True)
class Job:
    """One run: when it arrives (seconds after the first), its cores, how long it books
    and how long it really runs (a fraction of that)."""

    index: int
    arrival: float
    cores: int
    booked: float
    runs: float


@dataclass(frozen=True)
class Outcome:
    """One way of running the workload: each job's start and end (seconds after the first
    arrival), and the core-seconds the pool held for the runs."""

    name: str
    arrivals: list[float]
    starts: list[float]
    ends: list[float]
    used_core_seconds: float
    note: str = ""

    @property
    def makespan(self) -> float:
        return max(self.ends) - min(self.arrivals)

    @property
    def waits(self) -> list[float]:
        return [start - arrival for start, arrival in zip(self.starts, self.arrivals, strict=True)]


def workload(jobs: int, *, seed: int, scale: float, gap: float) -> list[Job]:
    """``jobs`` runs, seeded: Poisson arrivals ``gap`` seconds apart on average, sizes from
    :data:`CORES`, bookings from :data:`BOOKED_SECONDS`, each run ending at a fraction of
    its booking drawn uniformly from 0.2 to 0.9."""
    rng = random.Random(seed)  # noqa: S311 (a workload, not a secret)
    sizes, weights = list(CORES), list(CORES.values())
    arrival = 0.0
    found = []
    for index in range(jobs):
        booked = rng.choice(BOOKED_SECONDS) * scale
        found.append(
            Job(
                index=index,
                arrival=round(arrival, 2),
                cores=rng.choices(sizes, weights)[0],
                booked=round(booked),
                runs=round(booked * rng.uniform(0.2, 0.9), 1),
            )
        )
        arrival += rng.expovariate(1 / gap) if gap > 0 else 0
    return found


def ideal_fcfs(jobs: list[Job], cores: int) -> Outcome:
    """First come, first served with perfect knowledge: in arrival order, each job starts
    once it is first in the queue and its cores are free, and holds them for its true run."""
    running: list[tuple[float, int]] = []  # (end, cores)
    starts, ends = [], []
    last_start = 0.0
    for job in sorted(jobs, key=lambda j: (j.arrival, j.index)):
        moment = max(job.arrival, last_start)
        while cores - sum(c for end, c in running if end > moment) < job.cores:
            moment = min(end for end, _ in running if end > moment)
        running.append((moment + job.runs, job.cores))
        starts.append(moment)
        ends.append(moment + job.runs)
        last_start = moment
    return Outcome(
        name="ideal FCFS",
        arrivals=[j.arrival for j in sorted(jobs, key=lambda j: (j.arrival, j.index))],
        starts=starts,
        ends=ends,
        used_core_seconds=sum(j.cores * j.runs for j in jobs),
    )


def _fits(placed: list[tuple[float, float, int]], start: float, end: float, room: int) -> bool:
    """Whether at most ``room`` cores are taken at every instant of ``[start, end)``."""
    moments = {start} | {s for s, _, _ in placed if start < s < end}
    return all(sum(c for s, e, c in placed if s <= moment < e) <= room for moment in moments)


def ideal_backfill(jobs: list[Job], cores: int) -> Outcome:
    """For reference: conservative backfill with perfect knowledge. Each job, as it
    arrives, gets the earliest start at which its cores are free for its whole true run,
    never delaying one placed before it (what the broker's calendar would do if bookings
    were exactly as long as the runs)."""
    placed: list[tuple[float, float, int]] = []
    ordered = sorted(jobs, key=lambda j: (j.arrival, j.index))
    starts, ends = [], []
    for job in ordered:
        candidates = sorted({job.arrival} | {e for _, e, _ in placed if e > job.arrival})
        start = next(t for t in candidates if _fits(placed, t, t + job.runs, cores - job.cores))
        placed.append((start, start + job.runs, job.cores))
        starts.append(start)
        ends.append(start + job.runs)
    return Outcome(
        name="ideal backfill",
        arrivals=[j.arrival for j in ordered],
        starts=starts,
        ends=ends,
        used_core_seconds=sum(j.cores * j.runs for j in jobs),
        note="(reference)",
    )


def backfill_setting_exists() -> bool:
    """Whether this broker has the ``backfill`` setting (issue 19's moves)."""
    return any(flat == "backfill" for _, flat, _, _ in setting_fields())


def broker_env(cores: int, jobs: int, *, moves: bool) -> dict[str, str]:
    """A broker on the zero-delay mock platform with a pool of ``cores`` cores."""
    return {
        **ZERO_DELAY,
        "EXECBROKER_ADMINS": "local",
        "EXECBROKER_POLL_INTERVAL": "0.2",
        "EXECBROKER_CAPACITY_CORES": str(cores),
        "EXECBROKER_CAPACITY_MEMORY_GIB": str(4 * cores),
        "EXECBROKER_CAPACITY_STORAGE_GIB": "1000",
        "EXECBROKER_QUOTA_ACTIVE_SESSIONS": str(jobs),
        "EXECBROKER_QUOTA_LIVE_OFFERS": str(jobs),
        "EXECBROKER_BACKFILL": "true" if moves else "false",
    }


def _request(job: Job) -> dict[str, Any]:
    document: dict[str, Any] = example("direct-request.json")
    document["executable"]["meta"] = {"name": f"job-{job.index}"}
    document["executable"]["environment"] = {"MOCK_RUN_SECONDS": str(job.runs)}
    document["compute"] = {
        "cores": {"min": job.cores, "max": job.cores},
        "memory": {"min": 1, "max": 1},
    }
    document["schedule"] = {"requested": {"duration": f"PT{int(job.booked)}S"}}
    return document


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _submit(client: httpx.AsyncClient, jobs: list[Job]) -> dict[str, tuple[Job, datetime]]:
    """POST /direct for each job at its arrival; the session of each, and when it was asked."""
    first = time.monotonic()
    sessions: dict[str, tuple[Job, datetime]] = {}
    for job in sorted(jobs, key=lambda j: j.arrival):
        await asyncio.sleep(max(0.0, first + job.arrival - time.monotonic()))
        asked = datetime.now(UTC)
        answer = await client.post("/direct", json=_request(job))
        if answer.status_code != 303:
            raise RuntimeError(f"job {job.index} refused: {answer.text[:500]}")
        sessions[answer.json()["meta"]["uuid"]] = (job, asked)
    return sessions


async def _until_all_ended(client: httpx.AsyncClient, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        listed = (await client.get("/sessions", params={"last": 1000})).json()["sessions"]
        ended = [s for s in listed if s["phase"] in ("COMPLETED", "FAILED", "CANCELLED")]
        if len(ended) >= count:
            failed = [s["meta"]["uuid"] for s in ended if s["phase"] != "COMPLETED"]
            if failed:
                raise RuntimeError(f"runs that did not complete: {failed}")
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"not all {count} runs ended within {within} s")


async def _drive(broker: LiveBroker, jobs: list[Job], within: float) -> Outcome:
    async with httpx.AsyncClient(base_url=broker.url, headers=broker.headers, timeout=60) as client:
        sessions = await _submit(client, jobs)
        await _until_all_ended(client, len(jobs), within)
        first = min(asked for _, asked in sessions.values())
        window = {
            "from": (first - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        answer = await client.get("/admin/calendar", params=window)
        answer.raise_for_status()
        calendar = answer.json()
    used = {b["session"]: b for b in calendar["bookings"] if b["session"] in sessions}
    if len(used) != len(jobs) or any("used" not in b for b in used.values()):
        raise RuntimeError("the calendar does not show every run as used")
    arrivals, starts, ends = [], [], []
    core_seconds = 0.0
    for uuid, (_, asked) in sorted(sessions.items(), key=lambda item: item[1][1]):
        start, end = _instant(used[uuid]["used"]["start"]), _instant(used[uuid]["used"]["end"])
        arrivals.append((asked - first).total_seconds())
        starts.append((start - first).total_seconds())
        ends.append((end - first).total_seconds())
        core_seconds += used[uuid]["cores"] * (end - start).total_seconds()
    return Outcome(
        name="", arrivals=arrivals, starts=starts, ends=ends, used_core_seconds=core_seconds
    )


def run_broker(jobs: list[Job], cores: int, *, moves: bool, timeout: float) -> Outcome:
    """The workload on a fresh broker, with or without moves."""
    with tempfile.TemporaryDirectory() as scratch:
        env = broker_env(cores, len(jobs), moves=moves)
        with LiveBroker(data_dir=Path(scratch), env=env) as broker:
            found = asyncio.run(_drive(broker, jobs, timeout))
    name = "with moves" if moves else "without moves"
    note = "" if backfill_setting_exists() or not moves else "no backfill setting yet: no moves"
    return Outcome(
        name=name,
        arrivals=found.arrivals,
        starts=found.starts,
        ends=found.ends,
        used_core_seconds=found.used_core_seconds,
        note=note,
    )


def _p95(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def report(outcomes: list[Outcome], jobs: list[Job], cores: int) -> bool:
    work = sum(j.cores * j.runs for j in jobs)
    booked = sum(j.cores * j.booked for j in jobs)
    print(
        f"workload            {len(jobs)} runs on {cores} cores: {work:.0f} core-s of work, "
        f"{booked:.0f} core-s booked ({work / booked:.0%} of it used by the runs)"
    )
    print(
        f"{'':20}{'makespan':>10}{'util used':>11}{'util work':>11}"
        f"{'wait mean':>11}{'wait p95':>10}"
    )
    rows = {}
    for outcome in outcomes:
        pool = cores * outcome.makespan
        used_utilisation = outcome.used_core_seconds / pool
        work_utilisation = work / pool
        rows[outcome.name] = work_utilisation
        print(
            f"{outcome.name:20}{outcome.makespan:9.1f}s{used_utilisation:11.3f}"
            f"{work_utilisation:11.3f}{statistics.fmean(outcome.waits):10.1f}s"
            f"{_p95(outcome.waits):9.1f}s  {outcome.note}".rstrip()
        )
    ratio = rows["with moves"] / rows["ideal FCFS"]
    passed = ratio >= TARGET
    print(f"with moves / ideal  {ratio:.3f} (target >= {TARGET}): {'PASS' if passed else 'FAIL'}")
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="runs in the workload")
    parser.add_argument("--cores", type=int, default=8, help="cores in the pool")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every booked duration")
    parser.add_argument("--gap", type=float, default=1.0, help="mean seconds between arrivals")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per variant")
    parser.add_argument(
        "--only",
        choices=("with", "without"),
        help="run only one of the broker variants (the ideal queue always runs)",
    )
    options = parser.parse_args()
    jobs = workload(options.jobs, seed=options.seed, scale=options.scale, gap=options.gap)
    outcomes = [ideal_fcfs(jobs, options.cores), ideal_backfill(jobs, options.cores)]
    for moves in (True, False):
        if options.only and options.only != ("with" if moves else "without"):
            continue
        started = time.monotonic()
        outcomes.append(run_broker(jobs, options.cores, moves=moves, timeout=options.timeout))
        print(f"({outcomes[-1].name}: {time.monotonic() - started:.0f} s of wall time)")
    if not any(o.name == "with moves" for o in outcomes):
        for outcome in outcomes:
            print(outcome.name, outcome.makespan)
        return
    sys.exit(0 if report(outcomes, jobs, options.cores) else 1)


if __name__ == "__main__":
    main()
