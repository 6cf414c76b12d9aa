"""Issue 19's two scenarios, as a user meets them: a real broker process over HTTP, on the
mock platform, whose waiting direct runs move earlier when runs end early.

- A pool of 2 cores and three 1-core direct runs with no duration (an hour's hold each),
  each exiting after 1 s: without moves the third waits an hour; with them all three are
  COMPLETED within 60 s. On SQLite, and on two brokers sharing PostgreSQL.
- The default 64-core pool and a burst of 300 zero-delay direct runs: all COMPLETED in a
  few minutes, not the hour most of them would wait; the test prints the utilisation.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.engine import ROLES
from tests.support.live import LiveBroker
from tests.support.wire import example

pytestmark = pytest.mark.slow  # broker processes, each scenario tens of seconds

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
MOVED = "Moved earlier from"


def _run(seconds: float) -> dict[str, Any]:
    """A 1-core container run, no duration asked (the default hour), exiting after
    ``seconds``.
    """
    document: dict[str, Any] = example("direct-request.json")
    document["executable"]["environment"] = {"MOCK_RUN_SECONDS": str(seconds)}
    document["compute"] = {"cores": {"min": 1, "max": 1}, "memory": {"min": 1, "max": 1}}
    return document


def _until_ended(client: httpx.Client, urls: list[str], within: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    ended: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for url in urls:
            if url not in ended:
                session = client.get(url).json()
                if session["phase"] in TERMINAL:
                    ended[url] = session
        if len(ended) == len(urls):
            return [ended[url] for url in urls]
        time.sleep(0.5)
    waiting = {url: client.get(url).json()["phase"] for url in urls if url not in ended}
    raise AssertionError(f"not ended within {within} s: {waiting}")


def _start(session: dict[str, Any]) -> datetime:
    """When the run is planned to start (the schedule writes an interval: start/PT0S)."""
    text = session["schedule"]["available"]["start"].split("/")[0]
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _texts(session: dict[str, Any]) -> list[str]:
    return [m["message"] for m in session["meta"]["messages"]]


def _three_runs_on_two_cores(clients: list[httpx.Client]) -> None:
    started = time.monotonic()
    urls = []
    for index in range(3):
        created = clients[index % len(clients)].post("/direct", json=_run(1))
        assert created.status_code == 303, created.text
        urls.append(created.headers["location"])
    third = clients[0].get(urls[2]).json()
    promised = _start(third)
    assert promised > datetime.now(UTC) + timedelta(minutes=30), "the third waits an hour"
    ended = _until_ended(clients[-1], urls, within=60)
    assert [s["phase"] for s in ended] == ["COMPLETED"] * 3
    moved = [text for text in _texts(ended[2]) if text.startswith(MOVED)]
    assert moved, _texts(ended[2])
    assert "capacity freed by" in moved[0]
    print(f"three runs on two cores: all COMPLETED after {time.monotonic() - started:.1f} s")


async def _burst(broker: LiveBroker, documents: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST /direct for every document at once (at most 50 in flight)."""
    gate = asyncio.Semaphore(50)
    async with httpx.AsyncClient(base_url=broker.url, headers=broker.headers, timeout=60) as c:

        async def post(document: dict[str, Any]) -> httpx.Response:
            async with gate:
                return await c.post("/direct", json=document)

        return await asyncio.gather(*(post(d) for d in documents))


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "EXECBROKER_DATABASE_URL": database_url,
        "EXECBROKER_LOG_LEVEL": "WARNING",
        "EXECBROKER_CAPACITY_CORES": "2",
        # A quick mock: the scenario is about the hour-long hold, not the platform's pace.
        "EXECBROKER_MOCK_PREPARE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0.3)),
        "EXECBROKER_MOCK_RELEASE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0.3)),
        "EXECBROKER_PREPARE_ESTIMATES": json.dumps(dict.fromkeys(ROLES, 1)),
        "EXECBROKER_RELEASE_ESTIMATES": json.dumps(dict.fromkeys(ROLES, 0.5)),
        **extra,
    }


def test_three_runs_on_two_cores_all_complete_within_a_minute(tmp_path: Path) -> None:
    # SQLite here; PostgreSQL with two brokers below.
    database = f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}"
    with LiveBroker(data_dir=tmp_path, env=_env(database)) as broker, broker.client() as c:
        _three_runs_on_two_cores([c])


def test_three_runs_on_two_cores_across_two_brokers(tmp_path: Path, database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("several brokers share a PostgreSQL database, not an SQLite file")
    env = _env(database_url)
    with (
        LiveBroker(data_dir=tmp_path, env=env) as first,
        LiveBroker(data_dir=tmp_path, env=env) as second,
        first.client() as a,
        second.client() as b,
    ):
        _three_runs_on_two_cores([a, b])


def test_a_burst_of_300_runs_completes_in_minutes_not_hours(tmp_path: Path) -> None:
    runs = 300
    env = {
        "EXECBROKER_LOG_LEVEL": "WARNING",
        "EXECBROKER_ADMINS": "local",
        "EXECBROKER_MOCK_PREPARE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0)),
        "EXECBROKER_MOCK_RELEASE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0)),
        "EXECBROKER_QUOTA_ACTIVE_SESSIONS": str(runs),
        "EXECBROKER_QUOTA_STORED_RECORDS": str(2 * runs),
    }
    with LiveBroker(data_dir=tmp_path, env=env) as broker, broker.client(timeout=60) as client:
        first = datetime.now(UTC)
        started = time.monotonic()
        answers = asyncio.run(_burst(broker, [_run(0) for _ in range(runs)]))
        assert all(a.status_code == 303 for a in answers), answers[0].text
        urls = [a.headers["location"] for a in answers]
        # As each was answered: how many were booked to start an hour or more from now.
        waiting = sum(_start(a.json()) > first + timedelta(minutes=30) for a in answers)
        ended = _until_ended(client, urls, within=240)
        took = time.monotonic() - started
        assert [s["phase"] for s in ended] == ["COMPLETED"] * runs
        window = {
            "from": (first - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        calendar = client.get("/admin/calendar", params=window).json()
        moves = client.get("/metrics").text
    uuids = {s["meta"]["uuid"] for s in ended}
    used = [b for b in calendar["bookings"] if b["session"] in uuids and "used" in b]
    core_seconds = sum(
        b["cores"]
        * (
            datetime.fromisoformat(b["used"]["end"]) - datetime.fromisoformat(b["used"]["start"])
        ).total_seconds()
        for b in used
    )
    moved = next(
        float(line.split()[-1])
        for line in moves.splitlines()
        if line.startswith("execbroker_backfill_moves_total ")
    )
    print(
        f"{runs} direct runs on 64 cores ({waiting} of them first booked an hour or more "
        f"ahead): all COMPLETED in {took:.1f} s; {moved:.0f} moved earlier; utilisation "
        f"{core_seconds / (64 * took):.2f} (core-seconds used over the pool's)"
    )
    assert waiting > 0, "the burst did not fill the pool"
    assert moved >= waiting
