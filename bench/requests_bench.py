"""Throughput and latency of the request → offers → accept path, over real HTTP.

Starts a broker process on a loopback port (SQLite by default, or the database named by
--database-url), then runs a bounded number of clients, each doing: POST /requests, GET the
offer set, accept the first offer. Prints requests per second and latency percentiles.

    .venv/bin/python bench/requests_bench.py --offers 400 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.live import LiveBroker
from tests.support.wire import notebook_request, phase_update


async def _client(client: httpx.AsyncClient, count: int, timings: dict[str, list[float]]) -> None:
    for _ in range(count):
        start = time.perf_counter()
        created = await client.post("/requests", json=notebook_request())
        timings["request"].append(time.perf_counter() - start)
        assert created.status_code == 303, created.text

        start = time.perf_counter()
        offer_set = await client.get(created.headers["location"])
        timings["get"].append(time.perf_counter() - start)

        start = time.perf_counter()
        accepted = await client.post(
            offer_set.json()["offers"][0]["meta"]["url"], json=phase_update("ACCEPTED")
        )
        timings["accept"].append(time.perf_counter() - start)
        assert accepted.status_code == 200, accepted.text


def _percentiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100)
    p50, p95, top = cuts[49] * 1000, cuts[94] * 1000, max(values) * 1000
    return f"p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {top:6.1f} ms"


async def run(url: str, headers: dict[str, str], offers: int, clients: int) -> None:
    timings: dict[str, list[float]] = {"request": [], "get": [], "accept": []}
    per_client = max(1, offers // clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(_client(client, per_client, timings) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    done = per_client * clients
    print(f"{done} request/get/accept cycles by {clients} clients in {elapsed:.2f} s")
    print(f"  cycles/s        {done / elapsed:8.1f}")
    print(f"  HTTP calls/s    {3 * done / elapsed:8.1f}")
    for name, values in timings.items():
        print(f"  {name:<8} {_percentiles(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=400, help="cycles in total (bounded)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--database-url", default=None, help="e.g. postgresql+psycopg://…")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            "EXECBROKER_LOG_LEVEL": "WARNING",
            # One user accepts every cycle's offer: no quota in the way of what is measured.
            "EXECBROKER_QUOTA_LIVE_OFFERS": "1000000",
            "EXECBROKER_QUOTA_ACTIVE_SESSIONS": "1000000",
        }
        if args.database_url:
            env["EXECBROKER_DATABASE_URL"] = args.database_url
        with LiveBroker(data_dir=Path(data_dir), env=env) as broker:
            print(f"broker on {broker.url}, database {args.database_url or 'SQLite'}")
            asyncio.run(run(broker.url, broker.headers, args.offers, args.clients))


if __name__ == "__main__":
    main()
