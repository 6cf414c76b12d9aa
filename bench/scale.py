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
        async with httpx.AsyncClient(
            base_url=broker.url, headers=broker.headers, timeout=120
        ) as http:
            while not queue.empty():
                queue.get_nowait()
                answer = await http.post(
                    "/direct", content=body, headers={"Content-Type": "application/json"}
                )
                if answer.status_code != 303:
                    raise RuntimeError(f"direct request refused: {answer.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(client(next(targets)) for _ in range(clients)))
    return time.perf_counter() - started


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
    results = [_measure("SQLite", "sqlite", 1, args.sessions, args.clients)]
    for brokers in (1, 2):
        name, url = _fresh_postgres(args.postgres)
        try:
            results.append(_measure("PostgreSQL", url, brokers, args.sessions, args.clients))
        finally:
            _drop_postgres(args.postgres, name)

    print()
    print(
        "database   | brokers | submitted/s | completed/s | lateness p50 s | p99 s | not COMPLETED"
    )
    print(
        "---------- | ------: | ----------: | ----------: | -------------: | ----: | ------------:"
    )
    for r in results:
        print(
            f"{r.label:<10} | {r.brokers:7d} | {r.submitted_per_s:11.1f} | "
            f"{r.completed_per_s:11.1f} | {r.lateness_p50:14.3f} | {r.lateness_p99:5.3f} | "
            f"{r.not_completed:13d}"
        )
    sqlite, pg1, pg2 = results
    ratio = pg2.completed_per_s / pg1.completed_per_s
    print()
    print(f"PostgreSQL 1 broker / SQLite:      {pg1.completed_per_s / sqlite.completed_per_s:.2f}")
    verdict = "PASS" if ratio >= 1.3 else "FAIL"
    print(f"PostgreSQL 2 brokers / 1 broker:   {ratio:.2f}  (target >= 1.3): {verdict}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
