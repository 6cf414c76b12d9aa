"""Sessions through their whole lifecycle on the zero-delay mock platform.

Starts a broker (SQLite) whose mock platform takes no time at all, submits N direct
sessions (executable, compute, one storage, one data) as fast as the clients can, waits
until every one has ended, and prints: sessions completed per second, p50/p99 lateness
(each component's actual prepare start minus its scheduled one; compute's prepare start is
its run's start on the zero-delay mock), the most sessions in flight at once, the broker's
peak RSS, and how many sessions did not end COMPLETED.

    .venv/bin/python bench/lifecycle.py --sessions 1000
    .venv/bin/python bench/lifecycle.py --sessions 10000 --run-seconds 60

``--run-seconds`` keeps each run going that long, so that the sessions pile up in flight
(with 60 s and ~150 submissions/s, nearly all 10,000 are in flight at once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.live import LiveBroker
from tests.support.wire import example

ROLES = ("executable", "compute", "storage", "data")


def _request(run_seconds: float) -> dict[str, Any]:
    document: dict[str, Any] = example("container-with-data-request.yaml")
    document["executable"]["environment"] = {"MOCK_RUN_SECONDS": str(run_seconds)}
    # Long enough that the run ends by exiting, not by its time running out.
    minutes = max(2, int(run_seconds // 60) + 2)
    document["schedule"] = {"requested": {"duration": f"PT{minutes}M"}}
    return document


async def _submit(
    url: str, headers: dict[str, str], count: int, clients: int, run_seconds: float
) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    body = json.dumps(_request(run_seconds)).encode()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            while not queue.empty():
                queue.get_nowait()
                answer = await http.post(
                    "/direct", content=body, headers={"Content-Type": "application/json"}
                )
                if answer.status_code != 303:
                    raise RuntimeError(f"direct request refused: {answer.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


def _count(database: Path, sql: str) -> int:
    with sqlite3.connect(database, timeout=30) as connection:
        value = connection.execute(sql).fetchone()[0]
    return int(value or 0)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _lateness(database: Path) -> list[float]:
    with sqlite3.connect(database, timeout=30) as connection:
        rows = connection.execute(
            "SELECT prepare_start, started_at FROM components "
            "WHERE started_at IS NOT NULL AND role != 'volume'"
        ).fetchall()
    return [(_parse(started) - _parse(planned)).total_seconds() for planned, started in rows]


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(fraction * 100) - 1]


# A broker whose mock platform and planner take no time (also bench/backfill.py's).
ZERO_DELAY = {
    "EXECBROKER_LOG_LEVEL": "WARNING",
    "EXECBROKER_PREPARE_ESTIMATES": json.dumps(dict.fromkeys(ROLES, 0)),
    "EXECBROKER_RELEASE_ESTIMATES": json.dumps(dict.fromkeys(ROLES, 0)),
    "EXECBROKER_PLANNING_SLACK": "0",
    "EXECBROKER_MOCK_PREPARE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0)),
    "EXECBROKER_MOCK_RELEASE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0)),
}


def zero_delay_env(count: int) -> dict[str, str]:
    """:data:`ZERO_DELAY`, runs that end at once, and room for ``count`` sessions at once
    (also used by ``bench/scale.py``)."""
    return {
        **ZERO_DELAY,
        "EXECBROKER_MOCK_RUN_SECONDS": "0",
        "EXECBROKER_POLL_INTERVAL": "0.5",
        "EXECBROKER_CAPACITY_CORES": str(10 * count),
        "EXECBROKER_CAPACITY_MEMORY_GIB": str(10 * count),
        "EXECBROKER_CAPACITY_STORAGE_GIB": str(100 * count),
        "EXECBROKER_QUOTA_ACTIVE_SESSIONS": str(count),
        "EXECBROKER_QUOTA_STORED_RECORDS": str(10 * count),
    }


@dataclass(frozen=True)
class LifecycleRun:
    """What one lifecycle run measured (``bench/http.py`` reads it too)."""

    count: int
    clients: int
    run_seconds: float
    submit_seconds: float
    finished_seconds: float
    peak_in_flight: int
    peak_rss_mib: float
    stored: int
    completed: int
    lateness: list[float]

    @property
    def rate(self) -> float:
        """Sessions completed per second, from the first submission to the last end."""
        return self.completed / self.finished_seconds

    @property
    def not_completed(self) -> int:
        return self.count - self.completed


def measure(count: int, clients: int, run_seconds: float, timeout: float) -> LifecycleRun:
    """Submit ``count`` direct sessions to a fresh zero-delay broker and wait for their end."""
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        env = zero_delay_env(count)
        database = data_dir / "execbroker.db"
        with LiveBroker(data_dir=data_dir, env=env) as broker:
            started = time.perf_counter()
            peak = 0
            submit = asyncio.run(_submit(broker.url, broker.headers, count, clients, run_seconds))
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                open_now = _count(
                    database,
                    "SELECT count(*) FROM sessions "
                    "WHERE phase NOT IN ('COMPLETED','FAILED','CANCELLED')",
                )
                peak = max(peak, open_now)
                if open_now == 0:
                    break
                time.sleep(0.2)
            finished = time.perf_counter() - started
            assert broker.process is not None
            rss = _peak_rss_mib(broker.process.pid)
        return LifecycleRun(
            count=count,
            clients=clients,
            run_seconds=run_seconds,
            submit_seconds=submit,
            finished_seconds=finished,
            peak_in_flight=peak,
            peak_rss_mib=rss,
            stored=_count(database, "SELECT count(*) FROM sessions"),
            completed=_count(database, "SELECT count(*) FROM sessions WHERE phase = 'COMPLETED'"),
            lateness=_lateness(database),
        )


def run(count: int, clients: int, run_seconds: float, timeout: float) -> bool:
    result = measure(count, clients, run_seconds, timeout)
    lateness = result.lateness
    print(f"sessions            {count} submitted by {clients} clients, run {run_seconds} s each")
    print(
        f"submitted in        {result.submit_seconds:8.1f} s  "
        f"({count / result.submit_seconds:.0f} sessions/s)"
    )
    print(f"all ended after     {result.finished_seconds:8.1f} s")
    print(f"completed per s     {result.rate:8.1f}")
    print(f"most in flight      {result.peak_in_flight:8d}")
    print(
        f"lateness p50/p99    {_percentile(lateness, 0.5):8.3f} / "
        f"{_percentile(lateness, 0.99):.3f} s"
        f"   (prepare starts, {len(lateness)} components)"
    )
    print(f"peak broker RSS     {result.peak_rss_mib:8.0f} MiB")
    print(f"sessions stored     {result.stored:8d}")
    print(f"not COMPLETED       {result.not_completed:8d}")
    return result.not_completed == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--run-seconds", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=900, help="give up after (s)")
    args = parser.parse_args()
    ok = run(args.sessions, args.clients, args.run_seconds, args.timeout)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
