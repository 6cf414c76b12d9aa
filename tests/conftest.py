"""Fixtures: the broker through its real lifespan, on SQLite and on PostgreSQL.

Every API test runs against both databases. PostgreSQL is the server named by
``EXECBROKER_TEST_POSTGRES_URL`` (default: this machine's, database ``test``); each test run
creates a fresh database on it and drops it afterwards. Without a server the PostgreSQL
cases are skipped with a message, except under ``CI=true``, where that is a failure.

The markers that say what a test needs (``postgres``, ``containers``, ``browser``,
``skaha``) are given here, from the fixtures the test uses or the folder it is in, so that
no test can forget one; ``slow`` is written on the modules it describes.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from asgi_lifespan import LifespanManager

from execbroker.config import Settings
from execbroker.main import create_app
from tests.support.alone import turn
from tests.support.inprocess import InProcessClient
from tests.support.users import ADMINS, auth, write_tokens_file

ADMIN_URL = os.environ.get(
    "EXECBROKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
DATA = Path(__file__).parent / "data"
TESTS = Path(__file__).parent

# Fixtures that hand a test a PostgreSQL database of its own (`database_url` does only in its
# "postgresql" case), and the fixtures of the other outside things a test may need.
_POSTGRES_FIXTURES = frozenset({"postgres_database", "shared_database"})
_CONTAINER_FIXTURES = frozenset({"runtime"})  # tests/docker/conftest.py: the container runtime
_BROWSER_FIXTURES = frozenset({"browser_ready"})  # tests/web/test_browser.py: Chromium


def _needs_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "database_url" in callspec.params:
        return bool(callspec.params["database_url"] == "postgresql")
    return not _POSTGRES_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with what it needs, so that ``-m`` can leave those out."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if _needs_postgres(item):
            item.add_marker(pytest.mark.postgres)
        if fixtures & _CONTAINER_FIXTURES or item.path.is_relative_to(TESTS / "docker"):
            item.add_marker(pytest.mark.containers)
        if fixtures & _BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if item.path.is_relative_to(TESTS / "skaha"):
            item.add_marker(pytest.mark.skaha)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Run each test in its turn: see tests/support/alone.py."""
    with turn(item.config, alone=item.get_closest_marker("alone") is not None):
        return (yield)


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
            connection.execute(
                "TRUNCATE messages, components, sessions, offer_sets, name_bindings, "
                "preparing_times"
            )
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
            InProcessClient(
                app,
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
