"""Latency and throughput of ``POST /requests`` with 0 to 10,000 bookings in the calendar.

For each preload level, writes a fresh SQLite database before the broker starts: the schema
by the broker's own migrations, then N ACCEPTED sessions (no offer set, fixed seed) spread
over ±30 days around the notebook example's requested window. Then starts a broker process
on a loopback port, warms it up, and sends a bounded number of ``POST /requests`` (the
notebook example, which gets 4 offers) from concurrent clients, then as many ``GET /healthz``
as the floor. Prints the median and p99 latency and requests/s of each, and the targets:

- p50 at the largest level at most 1.5 times the p50 at the smallest (planning must not
  scan every booking);
- offers / no-op throughput ratio at least 0.2 at every level.

The pool is made large (see ``POOL``) so that every booking fits and every request still gets
4 offers: this measures what planning costs with many bookings in the calendar, not what
contention does. For the same reason each request asks for its own start interval somewhere
in that calendar (see ``request_documents``); ``--same-window`` sends the example's own
2030-01-01T10:00Z/PT3H every time, where the run's live offers then pile up.

    .venv/bin/python bench/offers.py --requests 800 --concurrency 16 --levels 0,1000,10000
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.live import LiveBroker
from tests.support.wire import example

from execbroker.config import Settings
from execbroker.model.records import ComponentRole
from execbroker.planning.offers import cost_documents, costs_of
from execbroker.planning.profile import profile_from_settings
from execbroker.storage.database import Database
from execbroker.storage.tables import sessions

# Big enough that 10,000 bookings of at most 8 cores / 32 GiB never crowd out the request.
POOL = {
    "EXECBROKER_CAPACITY_CORES": "100000",
    "EXECBROKER_CAPACITY_MEMORY_GIB": "400000",
    "EXECBROKER_CAPACITY_STORAGE_GIB": "10000000",
    # Thousands of live offers from one user: no quota in the way of what is measured.
    "EXECBROKER_QUOTA_LIVE_OFFERS": "1000000",
    # The preloaded sessions are one user's, 10,000 of them: past the stored-records quota.
    "EXECBROKER_QUOTA_STORED_RECORDS": "1000000",
}
REQUEST = "notebook-request.yaml"
EXPECTED_OFFERS = 4
WARMUP = 20
P50_GROWTH_TARGET = 1.5
RATIO_TARGET = 0.2
SEED = 20300101

# The notebook example asks for a start in 2030-01-01T10:00Z/PT3H.
CENTRE = dt.datetime(2030, 1, 1, 10, tzinfo=dt.UTC)
SPREAD = dt.timedelta(days=30)
MINUTE = dt.timedelta(minutes=1)


# --------------------------------------------------------------------------- preloading


def _booking_rows(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` ACCEPTED sessions, as the broker would have stored them after accepts."""
    profile = profile_from_settings(Settings())
    # A notebook session prepares compute and executable one after the other, and releases
    # them the same way: lead and tail as the planner works them out.
    roles = (ComponentRole.COMPUTE, ComponentRole.EXECUTABLE)
    prepare = sum((profile.prepare_time(role) for role in roles), dt.timedelta())
    release = sum((profile.release_time(role) for role in roles), dt.timedelta())
    now = dt.datetime.now(dt.UTC)
    span = int(2 * SPREAD.total_seconds())
    rows = []
    for _ in range(count):
        start = CENTRE - SPREAD + dt.timedelta(seconds=rng.randrange(span))
        start = start.replace(microsecond=0)
        duration = dt.timedelta(minutes=rng.randrange(30, 241, 5))
        cores = rng.randint(1, 8)
        memory = rng.choice([1, 2, 4, 8, 16, 32])
        prepare_start = start - prepare
        book_end = start + duration + release
        costs = costs_of(profile, cores=cores, memory_gib=memory, storage_gib=0, duration=duration)
        rows.append(
            {
                "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "owner": "local",
                "offer_set_uuid": None,
                "position": 0,
                "phase": "ACCEPTED",
                "expires": None,
                "created": now,
                "modified": now,
                "prepare_start": prepare_start,
                "prepare_seconds": prepare.total_seconds(),
                "available_start": start,
                "available_seconds": duration.total_seconds(),
                "release_seconds": release.total_seconds(),
                "book_start": prepare_start,
                "book_end": book_end,
                "cores": cores,
                "memory_gib": memory,
                "storage_gib": 0,
                "connectors": [],
                "costs": cost_documents(profile, costs),
                # What the lifecycle engine would next look at: the start of preparing.
                "next_due": prepare_start,
            }
        )
    return rows


async def preload(url: str, count: int, seed: int) -> None:
    """The schema (by the broker's migrations) and ``count`` bookings, in one transaction."""
    database = Database(url)
    try:
        await database.migrate()
        rows = _booking_rows(count, random.Random(seed))  # noqa: S311 - reproducible
        if rows:
            async with database.write() as connection:
                await connection.execute(sessions.insert(), rows)
    finally:
        await database.dispose()


async def bookings_left(url: str) -> int:
    """How many preloaded bookings are still ACCEPTED (all of them, unless the broker
    touched them)."""
    database = Database(url)
    try:
        async with database.read() as connection:
            query = sa.select(sa.func.count()).where(
                sessions.c.phase == "ACCEPTED", sessions.c.offer_set_uuid.is_(None)
            )
            return int((await connection.execute(query)).scalar_one())
    finally:
        await database.dispose()


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    """Latencies (seconds) of the calls that completed, and how long they all took."""

    latencies: list[float]
    elapsed: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[98] * 1000


def request_documents(count: int, *, same_window: bool, seed: int) -> list[Any]:
    """``count`` notebook requests. Each asks for its own 3-hour start interval, somewhere in
    the preloaded calendar, unless ``same_window``: then all ask for the example's own.

    Offers hold capacity for 300 s, so with one shared window every request plans against
    the 4 offers of every request before it: what it costs then grows with the run's length,
    whatever was preloaded. With windows spread over the calendar, the live offers spread
    over it as the bookings do, and each request sees about as many holds as the last."""
    document = example(REQUEST)
    if same_window:
        return [document] * count
    rng = random.Random(seed + 1)  # noqa: S311 - reproducible, not secret
    margin = SPREAD - dt.timedelta(days=5)  # the whole planned window stays in the calendar
    documents = []
    for _ in range(count):
        start = CENTRE + dt.timedelta(minutes=rng.randint(-margin // MINUTE, margin // MINUTE))
        varied = copy.deepcopy(document)
        varied["schedule"]["requested"]["start"] = f"{start:%Y-%m-%dT%H:%M:%SZ}/PT3H"
        documents.append(varied)
    return documents


async def _post_request(client: httpx.AsyncClient, document: Any) -> None:
    response = await client.post("/requests", json=document)
    assert response.status_code == 303, response.text


async def _get_healthz(client: httpx.AsyncClient, _document: Any) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200, response.text


async def _measure(
    client: httpx.AsyncClient,
    call: Any,
    documents: list[Any],
    *,
    concurrency: int,
    time_limit: float,
) -> Run:
    """One call per document from ``concurrency`` clients; fewer if ``time_limit`` runs out."""
    latencies: list[float] = []
    queue = iter(documents)
    started = time.perf_counter()
    deadline = started + time_limit

    async def worker() -> None:
        for document in queue:
            if time.perf_counter() >= deadline:
                return
            begin = time.perf_counter()
            await call(client, document)
            latencies.append(time.perf_counter() - begin)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(latencies, time.perf_counter() - started)


async def measure(
    url: str,
    headers: dict[str, str],
    *,
    total: int,
    concurrency: int,
    time_limit: float,
    same_window: bool,
    seed: int,
) -> tuple[Run, Run]:
    documents = request_documents(WARMUP + total, same_window=same_window, seed=seed)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=60, limits=limits
    ) as client:
        # Warm-up, and a check that the request gets the offers the bench is about.
        for document in documents[:WARMUP]:
            response = await client.post("/requests", json=document)
            assert response.status_code == 303, response.text
            offers = response.json().get("offers", [])
            assert len(offers) == EXPECTED_OFFERS, f"{len(offers)} offers: {response.text}"
            await _get_healthz(client, None)
        requests = await _measure(
            client,
            _post_request,
            documents[WARMUP:],
            concurrency=concurrency,
            time_limit=time_limit,
        )
        healthz = await _measure(
            client,
            _get_healthz,
            [None] * total,
            concurrency=concurrency,
            time_limit=time_limit,
        )
    return requests, healthz


# --------------------------------------------------------------------------- reporting


def _level(count: int, args: argparse.Namespace) -> tuple[Run, Run]:
    with tempfile.TemporaryDirectory(prefix="execbroker-bench-") as directory:
        data_dir = Path(directory)
        url = f"sqlite+aiosqlite:///{data_dir / 'execbroker.db'}"
        started = time.perf_counter()
        asyncio.run(preload(url, count, args.seed))
        loaded = time.perf_counter() - started
        env = {**POOL, "EXECBROKER_DATABASE_URL": url, "EXECBROKER_LOG_LEVEL": "WARNING"}
        with LiveBroker(data_dir=data_dir, env=env) as broker:
            result = asyncio.run(
                measure(
                    broker.url,
                    broker.headers,
                    total=args.requests,
                    concurrency=args.concurrency,
                    time_limit=args.time_limit,
                    same_window=args.same_window,
                    seed=args.seed,
                )
            )
        left = asyncio.run(bookings_left(url))
        assert left == count, f"{count - left} preloaded bookings changed phase"
    requests, healthz = result
    print(
        f"  {count:>6} bookings: preloaded in {loaded:.1f} s; "
        f"{len(requests.latencies)} POST /requests in {requests.elapsed:.1f} s, "
        f"{len(healthz.latencies)} GET /healthz in {healthz.elapsed:.1f} s",
        flush=True,
    )
    return result


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(  # noqa: S603 - a fixed git command line
        ["git", "-C", str(root), *args],  # noqa: S607 - git from PATH
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def revision() -> str:
    """The commit measured, and whether src/ differs from it."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no", "src")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (src/ modified)" if dirty else head


def _verdict(*, passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=800, help="calls of each kind per level (bounded)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument(
        "--levels", default="0,1000,10000", help="bookings to preload, comma-separated"
    )
    parser.add_argument(
        "--time-limit", type=float, default=90, help="seconds at most per measured phase"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the calendar and windows")
    parser.add_argument(
        "--same-window",
        action="store_true",
        help="every request asks for the example's own start interval (offers pile up there)",
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    print(
        f"execbroker bench/offers.py  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  "
        f"Python {platform.python_version()}  {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores (client and broker share them), "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"revision {revision()}")
    print(
        f"SQLite; POST /requests = {REQUEST} ({EXPECTED_OFFERS} offers); "
        f"{args.requests} calls of each kind per level, concurrency {args.concurrency}; "
        f"pool {POOL['EXECBROKER_CAPACITY_CORES']} cores"
    )
    print(
        "start intervals: "
        + ("the example's own, every time" if args.same_window else "one per request, spread")
    )
    results = {count: _level(count, args) for count in levels}
    print(f"load average {os.getloadavg()[0]:.2f} at the end")

    print()
    print("bookings | requests p50 ms | p99 ms | req/s | healthz req/s | ratio")
    print("-------: | --------------: | -----: | ----: | ------------: | ----:")
    for count, (requests, healthz) in results.items():
        print(
            f"{count:>8} | {requests.p50_ms:15.1f} | {requests.p99_ms:6.1f} | "
            f"{requests.rate:5.0f} | {healthz.rate:13.0f} | {requests.rate / healthz.rate:5.2f}"
        )
    print()
    low, high = min(levels), max(levels)
    growth = results[high][0].p50_ms / results[low][0].p50_ms
    print(
        f"p50 at {high} bookings / p50 at {low}: {results[high][0].p50_ms:.1f} / "
        f"{results[low][0].p50_ms:.1f} ms = {growth:.3f} "
        f"(target ≤ {P50_GROWTH_TARGET}): {_verdict(passed=growth <= P50_GROWTH_TARGET)}"
    )
    ratios = {count: r.rate / h.rate for count, (r, h) in results.items()}
    listed = ", ".join(f"{ratios[count]:.3f} at {count}" for count in levels)
    print(
        f"offers / no-op throughput: {listed} (target ≥ {RATIO_TARGET}): "
        f"{_verdict(passed=min(ratios.values()) >= RATIO_TARGET)}"
    )


if __name__ == "__main__":
    main()
