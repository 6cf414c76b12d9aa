"""``/healthz`` pings the database once for all its callers, and still reports it gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from asgi_lifespan import LifespanManager

from execbroker.api.readiness import FRESH_FOR, SharedPing
from execbroker.config import Settings
from execbroker.main import create_app
from tests.conftest import ADMIN_URL
from tests.support.users import ADMINS, write_tokens_file


@asynccontextmanager
async def _broker(data_dir: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "tokens_file": write_tokens_file(data_dir / "tokens.yaml"),
        "admins": ADMINS,
    }
    settings = Settings(**values)
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://broker.test"
        ) as client,
    ):
        yield client


def _refuse_connections(database: str, *, refusing: bool) -> None:
    """The database takes no connection (and those open are ended), or takes them again."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {"false" if refusing else "true"}'
        )
        if refusing:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )


@pytest.mark.alone  # how soon the 503 comes is measured
async def test_a_database_that_stops_answering_is_reported_within_the_ping_interval(
    tmp_path: Path, postgres_database: str | None
) -> None:
    if postgres_database is None:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}")
    name = postgres_database.rsplit("/", 1)[1]
    async with _broker(tmp_path, postgres_database) as client:
        # Polled hard, as a load balancer might: the answers come from one shared ping.
        answers = await asyncio.gather(*(client.get("/healthz") for _ in range(50)))
        assert {answer.status_code for answer in answers} == {200}
        _refuse_connections(name, refusing=True)
        stopped = time.monotonic()
        try:
            while (answer := await client.get("/healthz")).status_code == 200:
                assert time.monotonic() - stopped < 10, "a gone database still looks ready"
                await asyncio.sleep(0.05)
            noticed = time.monotonic() - stopped
            while answer.json()["status"] != "unavailable":  # the storage probe may say first
                assert time.monotonic() - stopped < 10, answer.text
                answer = await client.get("/healthz")
                await asyncio.sleep(0.05)
        finally:
            _refuse_connections(name, refusing=False)
        assert answer.status_code == 503
        assert answer.json()["database"] == "OperationalError"
        # The interval, and a moment for the refused reconnect itself.
        assert noticed < FRESH_FOR + 1.5
        deadline = time.monotonic() + 10
        while (await client.get("/healthz")).status_code != 200:
            assert time.monotonic() < deadline, "the database is back but /healthz says not"
            await asyncio.sleep(0.1)


async def test_one_ping_answers_every_caller_within_the_interval_and_a_hung_one_times_out() -> None:
    pings = 0
    hang = asyncio.Event()

    async def ping() -> None:
        nonlocal pings
        pings += 1
        await asyncio.sleep(0.05)
        if hang.is_set():
            await asyncio.Event().wait()  # a database that never answers

    shared = SharedPing(ping, fresh_for=0.5, timeout=0.3)
    assert await asyncio.gather(*(shared.failure() for _ in range(100))) == [None] * 100
    assert await shared.failure() is None
    assert pings == 1
    await asyncio.sleep(0.5)
    hang.set()
    started = time.monotonic()
    failures = await asyncio.gather(*(shared.failure() for _ in range(10)))
    assert all(isinstance(failure, TimeoutError) for failure in failures)
    assert time.monotonic() - started < 1
    assert pings == 2
    await shared.aclose()
