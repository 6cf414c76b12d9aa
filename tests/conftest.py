"""Fixtures: the broker through its real lifespan, on SQLite and on PostgreSQL.

Every API test runs against both databases. PostgreSQL is the server named by
``EXECBROKER_TEST_POSTGRES_URL`` (default: this machine's, database ``test``); each test run
creates a fresh database on it and drops it afterwards. Without a server the PostgreSQL
cases are skipped with a message, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from asgi_lifespan import LifespanManager

from execbroker.config import Settings
from execbroker.main import create_app
from tests.support.users import ADMINS, auth, write_tokens_file

ADMIN_URL = os.environ.get(
    "EXECBROKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test run, as an SQLAlchemy async URL."""
    name = f"execbroker_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as failure:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true but unreachable: {failure}")
        yield None
        return
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: str | None
) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}"
    if postgres_database is None:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}; its cases are skipped")
    # Each test starts from an empty calendar, as it does on its own SQLite file.
    plain = postgres_database.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as connection:
        exists = connection.execute("SELECT to_regclass('public.sessions')").fetchone()
        if exists and exists[0]:
            connection.execute("TRUNCATE messages, components, sessions, offer_sets, name_bindings")
    return postgres_database


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    tokens = write_tokens_file(tmp_path / "test-tokens.yaml")

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path,
            "database_url": database_url,
            "tokens_file": tokens,
            "admins": ADMINS,
        }
        values.update(overrides)
        return Settings(**values)

    return build


BrokerClient = Callable[..., Any]


@pytest.fixture
def broker(make_settings: Callable[..., Settings]) -> BrokerClient:
    """``async with broker(**settings) as client``: the app through its real lifespan, and a
    client that calls it as alice (``user=None``: with no credentials)."""

    @asynccontextmanager
    async def start(
        user: str | None = "alice", **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(make_settings(**overrides))
        async with (
            LifespanManager(app) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app),
                base_url="http://broker.test",
                headers=auth(user) if user else None,
            ) as client,
        ):
            yield client

    return start


@pytest.fixture
async def client(broker: BrokerClient) -> AsyncIterator[httpx.AsyncClient]:
    async with broker() as started:
        yield started
