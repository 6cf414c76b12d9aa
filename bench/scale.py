"""The same lifecycle load on one broker (SQLite), one broker (PostgreSQL), two brokers
(PostgreSQL): sessions completed per second and p99 lateness for each, and their ratios.

Each configuration gets a fresh data directory (and a fresh PostgreSQL database, dropped at
the end); ``--sessions`` direct sessions (executable, compute, storage, data; zero-delay
mock platform) are submitted by ``--clients`` concurrent clients, spread round-robin over
the brokers, and the script waits until every session has ended.

    .venv/bin/python bench/scale.py --sessions 2000
    .venv/bin/python bench/scale.py --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.lifecycle import zero_delay_env
from tests.support.live import LiveBroker
from tests.support.wire import example

ROLES = ("executable", "compute", "storage", "data")


@dataclass
class Result:
    label: str
    brokers: int
    submitted_per_s: float
    completed_per_s: float
    lateness_p50: float
    lateness_p99: float
    not_completed: int
    cpu_ms: dict[str, float]  # CPU milliseconds per completed session, by process group
    passes: float  # engine passes (that found work), over all brokers
    relocked: float  # optimistic bookings that had to be run again under the lock


def _env(count: int, database_url: str) -> dict[str, str]:
    return {
        **zero_delay_env(count),
        "EXECBROKER_DATABASE_URL": database_url,
        "EXECBROKER_ENGINE_LEASE": "10",
    }


def _request() -> bytes:
    document: dict[str, Any] = example("container-with-data-request.yaml")
    document["executable"]["environment"] = {"MOCK_RUN_SECONDS": "0"}
    document["schedule"] = {"requested": {"duration": "PT2M"}}
    return json.dumps(document).encode()


async def _submit(brokers: list[LiveBroker], count: int, clients: int) -> float:
    body = _request()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    targets = itertools.cycle(brokers)

    async def client(broker: LiveBroker) -> None:
        # aiohttp rather than httpx: this client shares the two cores with the brokers and
        # PostgreSQL, and aiohttp takes about a third of httpx's CPU per request.
        headers = {**broker.headers, "Content-Type": "application/json"}
        async with aiohttp.ClientSession(
            base_url=broker.url, headers=headers, timeout=aiohttp.ClientTimeout(total=120)
        ) as http:
            while not queue.empty():
                queue.get_nowait()
                async with http.post("/direct", data=body, allow_redirects=False) as answer:
                    if answer.status != 303:
                        text = await answer.text()
                        raise RuntimeError(f"direct request refused: {text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(client(next(targets)) for _ in range(clients)))
    return time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith("postgres"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class _CpuMeter:
    """CPU used by the brokers, PostgreSQL (all its processes, including backends that
    come and go: counted from their parent's children totals too) and this client."""

    def __init__(self, brokers: list[int]) -> None:
        self._brokers = brokers
        self._start = self._sample()

    def _sample(self) -> dict[str, float]:
        postgres = 0.0
        for pid in _postgres_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime, stime, cutime, cstime: the postmaster's children totals hold the
            # backends that have exited.
            postgres += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        usage = os.times()
        return {
            "brokers": sum(_cpu_seconds(pid) for pid in self._brokers),
            "postgres": postgres,
            "client": usage.user + usage.system,
        }

    def used(self) -> dict[str, float]:
        end = self._sample()
        return {key: end[key] - self._start[key] for key in end}


def _metrics(broker: LiveBroker) -> dict[str, float]:
    """The broker's Prometheus samples, by name and labels."""
    text = httpx.get(f"{broker.url}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _percentile(values: list[float], fraction: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(fraction * 100) - 1]


def _sync_url(url: str) -> str:
    return url.replace("sqlite+aiosqlite://", "sqlite://", 1)


def _measure(label: str, url: str, brokers: int, count: int, clients: int) -> Result:
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        data_dir = Path(scratch)
        if url == "sqlite":
            url = f"sqlite+aiosqlite:///{data_dir / 'execbroker.db'}"
        engine = sa.create_engine(_sync_url(url))
        env = _env(count, url)
        live = [stack.enter_context(LiveBroker(data_dir=data_dir, env=env)) for _ in range(brokers)]
        meter = _CpuMeter([broker.process.pid for broker in live if broker.process])
        started = time.perf_counter()
        submit = asyncio.run(_submit(live, count, clients))
        with engine.connect() as connection:
            while True:
                open_now = connection.execute(
                    sa.text(
                        "SELECT count(*) FROM sessions "
                        "WHERE phase NOT IN ('COMPLETED','FAILED','CANCELLED')"
                    )
                ).scalar_one()
                connection.commit()
                if open_now == 0:
                    break
                time.sleep(0.2)
        finished = time.perf_counter() - started
        cpu = meter.used()
        counted = [_metrics(broker) for broker in live]
        with engine.connect() as connection:
            completed = connection.execute(
                sa.text("SELECT count(*) FROM sessions WHERE phase = 'COMPLETED'")
            ).scalar_one()
            rows = connection.execute(
                sa.text(
                    "SELECT prepare_start, started_at FROM components "
                    "WHERE started_at IS NOT NULL AND role != 'volume'"
                )
            ).all()
    engine.dispose()

    def moment(value: Any) -> datetime:
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    lateness = [(moment(b) - moment(a)).total_seconds() for a, b in rows]
    return Result(
        label,
        brokers,
        count / submit,
        completed / finished,
        _percentile(lateness, 0.5),
        _percentile(lateness, 0.99),
        count - completed,
        {key: 1000 * seconds / max(completed, 1) for key, seconds in cpu.items()},
        sum(c.get("execbroker_engine_pass_sessions_count", 0.0) for c in counted),
        sum(c.get('execbroker_bookings_total{path="relocked"}', 0.0) for c in counted),
    )


def _fresh_postgres(admin_url: str) -> tuple[str, str]:
    name = f"execbroker_bench_{secrets.token_hex(4)}"
    with sa.create_engine(
        admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    ).connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def _drop_postgres(admin_url: str, name: str) -> None:
    with sa.create_engine(
        admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    ).connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every configuration this many times"
    )
    parser.add_argument(
        "--skip-sqlite", action="store_true", help="only the two PostgreSQL configurations"
    )
    args = parser.parse_args()

    load = os.getloadavg()[0]
    print(
        f"execbroker bench/scale.py  {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  "
        f"Python {platform.python_version()}  {platform.machine()}, {os.cpu_count()} cores "
        f"(client, brokers and PostgreSQL share them), load average {load:.2f}"
    )
    print(
        f"{args.sessions} direct sessions per configuration, {args.clients} clients, "
        "zero-delay mock platform"
    )
    results: list[Result] = []
    for _ in range(args.repeat):
        # Interleaved, so that a slow spell of the machine does not fall on one setup only.
        if not args.skip_sqlite:
            results.append(_measure("SQLite", "sqlite", 1, args.sessions, args.clients))
        for brokers in (1, 2):
            name, url = _fresh_postgres(args.postgres)
            try:
                results.append(_measure("PostgreSQL", url, brokers, args.sessions, args.clients))
            finally:
                _drop_postgres(args.postgres, name)

    print()
    print(
        "database   | brokers | submitted/s | completed/s | lateness p50 s | p99 s | not COMPLETED"
        " | CPU ms/session: brokers | PostgreSQL | client | total | engine passes | relocked"
    )
    print(
        "---------- | ------: | ----------: | ----------: | -------------: | ----: | ------------:"
        " | ----------------------: | ---------: | -----: | ----: | ------------: | -------:"
    )
    for r in results:
        print(
            f"{r.label:<10} | {r.brokers:7d} | {r.submitted_per_s:11.1f} | "
            f"{r.completed_per_s:11.1f} | {r.lateness_p50:14.3f} | {r.lateness_p99:5.3f} | "
            f"{r.not_completed:13d} | {r.cpu_ms['brokers']:23.1f} | "
            f"{r.cpu_ms['postgres']:10.1f} | {r.cpu_ms['client']:6.1f} | "
            f"{sum(r.cpu_ms.values()):5.1f} | {r.passes:13.0f} | {r.relocked:8.0f}"
        )

    def median(label: str, brokers: int) -> float:
        return statistics.median(
            r.completed_per_s for r in results if r.label == label and r.brokers == brokers
        )

    pg1, pg2 = median("PostgreSQL", 1), median("PostgreSQL", 2)
    which = "medians of " if args.repeat > 1 else ""
    print()
    if not args.skip_sqlite:
        versus_sqlite = pg1 / median("SQLite", 1)
        print(f"PostgreSQL 1 broker / SQLite:      {versus_sqlite:.2f}  ({which}completed/s)")
    ratio = pg2 / pg1
    verdict = "PASS" if ratio >= 1.3 else "FAIL"
    print(
        f"PostgreSQL 2 brokers / 1 broker:   {ratio:.2f}  ({which}completed/s; "
        f"target >= 1.3): {verdict}"
    )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
