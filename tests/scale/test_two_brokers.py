"""Several broker processes on one PostgreSQL database: one truth, nothing done twice.

Two real brokers share a fresh database and a data directory (the tokens file, and the mock
platform's ledger: one platform that both drive).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from execbroker.platforms.mock import read_ledger
from tests.support.engine import ROLES
from tests.support.live import LiveBroker
from tests.support.wire import example, notebook_request, phase_update

pytestmark = pytest.mark.slow  # two broker processes, one killed under 500 sessions

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def _env(database: str, **extra: str) -> dict[str, str]:
    return {
        "EXECBROKER_DATABASE_URL": database.replace("postgresql://", "postgresql+psycopg://", 1),
        "EXECBROKER_LOG_LEVEL": "WARNING",
        "EXECBROKER_PREPARE_ESTIMATES": json.dumps(dict.fromkeys(ROLES, 0.5)),
        "EXECBROKER_RELEASE_ESTIMATES": json.dumps(dict.fromkeys(ROLES, 0.2)),
        "EXECBROKER_PLANNING_SLACK": "0",
        "EXECBROKER_BUDGET_SLACK": "60",
        "EXECBROKER_POLL_INTERVAL": "0.2",
        "EXECBROKER_MOCK_PREPARE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0.1)),
        "EXECBROKER_MOCK_RELEASE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0.05)),
        "EXECBROKER_QUOTA_LIVE_OFFERS": "100000",
        "EXECBROKER_QUOTA_ACTIVE_SESSIONS": "100000",
        "EXECBROKER_CAPACITY_CORES": "100000",
        "EXECBROKER_CAPACITY_MEMORY_GIB": "1000000",
        "EXECBROKER_CAPACITY_STORAGE_GIB": "10000000",
        **extra,
    }


def _pair(tmp_path: Path, env: dict[str, str]) -> tuple[LiveBroker, LiveBroker]:
    first = LiveBroker(data_dir=tmp_path, env=env).start()
    try:
        second = LiveBroker(data_dir=tmp_path, env=env).start()
    except Exception:
        first.stop()
        raise
    return first, second


def test_a_change_made_by_one_broker_wakes_waiters_on_the_other(
    tmp_path: Path, shared_database: str
) -> None:
    # A recheck far longer than the test: only NOTIFY can wake the waiter in time.
    env = _env(shared_database, EXECBROKER_CHANGE_RECHECK_SHARED="60")
    first, second = _pair(tmp_path, env)
    try:
        with first.client(timeout=60) as a, second.client(timeout=60) as b:
            document = example("container-with-data-request.yaml")
            document["executable"]["environment"] = {"MOCK_RUN_SECONDS": "600"}
            document["schedule"] = {"requested": {"duration": "PT20M"}}
            created = a.post("/direct", json=document)
            assert created.status_code == 303
            url = created.headers["location"]
            deadline = time.monotonic() + 20
            while b.get(url).json()["phase"] != "RUNNING" and time.monotonic() < deadline:
                b.get(url, params={"wait": 5, "phase": b.get(url).json()["phase"]})
            assert b.get(url).json()["phase"] == "RUNNING"

            events: list[str] = []

            def stream() -> None:
                with b.stream("GET", f"{url}/events") as answer:
                    for line in answer.iter_lines():
                        if line.startswith("data:"):
                            events.append(json.loads(line[5:])["phase"])

            reader = threading.Thread(target=stream, daemon=True)
            reader.start()
            waited: dict[str, Any] = {}

            def long_poll() -> None:
                started = time.monotonic()
                waited["phase"] = b.get(url, params={"wait": 30, "phase": "RUNNING"}).json()[
                    "phase"
                ]
                waited["seconds"] = time.monotonic() - started

            poller = threading.Thread(target=long_poll)
            poller.start()
            time.sleep(1.0)
            assert a.post(url, json=phase_update("CANCELLED")).status_code == 200
            poller.join(timeout=40)
            assert waited["phase"] != "RUNNING"
            assert waited["seconds"] < 3.0, waited  # woken by NOTIFY, not by a recheck
            reader.join(timeout=30)
            assert events[0] == "RUNNING"
            assert events[-1] == "CANCELLED"
    finally:
        first.stop()
        second.stop()


def test_500_sessions_on_two_brokers_survive_one_being_killed(
    tmp_path: Path, shared_database: str
) -> None:
    env = _env(shared_database, EXECBROKER_ENGINE_LEASE="3")
    first, second = _pair(tmp_path, env)
    rng = random.Random(500)  # noqa: S311 - a reproducible script, not a secret
    created: list[str] = []

    async def submit(broker: LiveBroker, count: int) -> None:
        async with httpx.AsyncClient(
            base_url=broker.url, headers=broker.headers, timeout=60
        ) as client:

            async def one() -> None:
                document = example("container-with-data-request.yaml")
                run = rng.choice(["0.5", "1", "2", "4"])
                document["executable"]["environment"] = {"MOCK_RUN_SECONDS": run}
                document["schedule"] = {"requested": {"duration": "PT5M"}}
                answer = await client.post("/direct", json=document)
                assert answer.status_code == 303, answer.text
                created.append(answer.headers["location"].rsplit("/", 1)[-1])

            for _ in range(count // 10):
                await asyncio.gather(*(one() for _ in range(10)))

    async def both() -> None:
        await asyncio.gather(submit(first, 250), submit(second, 250))

    try:
        asyncio.run(both())
        assert len(created) == 500
        time.sleep(1.0)  # let both engines hold claims
        first.kill()
        deadline = time.monotonic() + 180
        phases: dict[str, str] = {}
        with second.client(timeout=60) as client:
            while time.monotonic() < deadline:
                listed = client.get("/sessions", params={"last": 1000}).json()["sessions"]
                phases = {s["meta"]["uuid"]: s["phase"] for s in listed}
                if all(phases.get(u) in TERMINAL for u in created):
                    break
                time.sleep(0.5)
            metrics = client.get("/metrics").text
    finally:
        first.kill()
        second.stop()

    assert set(created) <= set(phases), "no session lost"
    outcomes = Counter(phases[u] for u in created)
    assert outcomes == {"COMPLETED": 500}, outcomes
    ledger = read_ledger(tmp_path / "mock-ledger.jsonl")
    prepared = Counter(e["component"] for e in ledger if e["action"] == "prepare")
    released = Counter(e["component"] for e in ledger if e["action"] == "release")
    assert len(prepared) == 500 * 4
    assert max(prepared.values()) == 1, "no component prepared twice"
    assert max(released.values()) == 1, "no component released twice"
    assert set(prepared) == set(released), "nothing left on the platform"
    assert "execbroker_claims_taken_over_total" in metrics


def _peak_use(database: str) -> tuple[int, int]:
    """The most cores and sessions held at any instant by sessions that hold capacity."""
    with psycopg.connect(database) as connection:
        rows = connection.execute(
            "SELECT book_start, book_end, cores FROM sessions "
            "WHERE phase NOT IN ('REJECTED','EXPIRED','CANCELLED','FAILED','COMPLETED','OFFERED')"
        ).fetchall()
    edges = sorted(
        [(start, cores, 1) for start, _, cores in rows]
        + [(end, -cores, -1) for _, end, cores in rows],
        key=lambda edge: (edge[0], edge[1]),
    )
    cores = sessions = peak_cores = peak_sessions = 0
    for _, delta, count in edges:
        cores += delta
        sessions += count
        peak_cores = max(peak_cores, cores)
        peak_sessions = max(peak_sessions, sessions)
    return peak_cores, peak_sessions


def test_a_saturated_slot_is_never_overbooked_across_brokers(
    tmp_path: Path, shared_database: str
) -> None:
    # Room for 3 notebooks of 4 cores at once in the pool.
    env = _env(shared_database, EXECBROKER_CAPACITY_CORES="12")
    first, second = _pair(tmp_path, env)
    window = {"start": "2031-06-01T10:00:00Z/PT0S", "duration": "PT2H"}

    async def run() -> list[int]:
        async with (
            httpx.AsyncClient(base_url=first.url, headers=first.headers, timeout=60) as a,
            httpx.AsyncClient(base_url=second.url, headers=second.headers, timeout=60) as b,
        ):

            async def ask(client: httpx.AsyncClient) -> list[str]:
                document = notebook_request(**window)
                document["compute"]["cores"] = {"min": 4, "max": 4}
                answer = await client.post("/requests", json=document)
                assert answer.status_code == 303, answer.text
                return [o["meta"]["url"] for o in answer.json().get("offers", [])]

            asked = await asyncio.gather(*(ask(a if i % 2 else b) for i in range(100)))
            offers = [url for urls in asked for url in urls]

            async def accept(index: int, url: str) -> int:
                client = a if index % 2 else b
                answer = await client.post(url, json=phase_update("ACCEPTED"))
                return answer.status_code

            return await asyncio.gather(*(accept(i, u) for i, u in enumerate(offers)))

    try:
        statuses = asyncio.run(run())
    finally:
        first.stop()
        second.stop()
    accepted = statuses.count(200)
    assert accepted >= 1
    assert set(statuses) <= {200, 409}, Counter(statuses)
    peak_cores, peak_sessions = _peak_use(shared_database)
    assert peak_cores <= 12, f"overbooked: {peak_cores} cores held at once in a pool of 12"
    assert peak_sessions <= 3
