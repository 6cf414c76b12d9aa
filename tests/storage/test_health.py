"""``/healthz`` says degraded (503) when the database reads but cannot take writes."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from asgi_lifespan import LifespanManager

from execbroker.config import AuthSettings, Settings
from execbroker.main import create_app
from tests.conftest import ADMIN_URL
from tests.support.live import LiveBroker
from tests.support.users import ADMINS, auth, write_tokens_file
from tests.support.wire import notebook_request

MIB = 1024 * 1024


def _run(*command: str) -> subprocess.CompletedProcess[bytes]:
    program = shutil.which(command[0]) or f"/bin/{command[0]}"
    return subprocess.run([program, *command[1:]], capture_output=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs this test may fill and remount read-only (needs mount rights)."""
    path = tmp_path / "tmpfs"
    path.mkdir()
    if _run("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)).returncode != 0:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail("CI runs as root: mounting a tmpfs must work there")
        pytest.skip("this user may not mount a tmpfs")
    yield path
    _run("umount", "-l", str(path))


@asynccontextmanager
async def _broker(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://broker.test",
            headers=auth("alice"),
        ) as client,
    ):
        yield client


async def _healthz_becomes(
    client: httpx.AsyncClient, status: int, within: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        answer = await client.get("/healthz")
        if answer.status_code == status or time.monotonic() > deadline:
            assert answer.status_code == status, answer.text
            body: dict[str, Any] = answer.json()
            return body
        await asyncio.sleep(0.2)


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        auth=AuthSettings(tokens_file=write_tokens_file(data_dir / "tokens.yaml"), admins=ADMINS),
        **overrides,
    )


async def test_a_writable_database_is_ok_on_both_databases(broker: Any) -> None:
    async with broker() as client:
        answer = await client.get("/healthz")
        again = await client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert answer.json()["database"] == "writable"
    assert "database_message" not in answer.json()
    assert again.json() == answer.json()


@pytest.fixture
def chattr() -> str:
    """``chattr``, where it may make a file immutable (root on ext4 and the like): the
    one way to make an open file refuse writes that holds for root."""
    program = shutil.which("chattr")
    if program is None or os.geteuid() != 0:
        pytest.skip("needs chattr, as root")
    return program


async def test_a_database_file_turned_read_only_is_degraded_until_writable_again(
    tmp_path: Path, chattr: str
) -> None:
    files = [tmp_path / "execbroker.db", tmp_path / "execbroker.db-wal"]
    async with _broker(_settings(tmp_path)) as client:
        await _healthz_becomes(client, 200)
        if _run(chattr, "+i", *map(str, files)).returncode != 0:
            pytest.skip(f"this file system cannot make files immutable: {tmp_path}")
        try:
            body = await _healthz_becomes(client, 503)
            assert body["status"] == "degraded"
            assert body["database"] == "failing"
            assert body["database_message"].startswith("writes fail: ")
        finally:
            _run(chattr, "-i", *map(str, files))
        assert (await _healthz_becomes(client, 200))["status"] == "ok"


async def test_a_nearly_full_disk_is_degraded_until_space_is_freed(tmpfs: Path) -> None:
    async with _broker(_settings(tmpfs, healthz_min_free_bytes=16 * MIB)) as client:
        await _healthz_becomes(client, 200)
        filler = tmpfs / "filler"
        free = shutil.disk_usage(tmpfs).free
        filler.write_bytes(b"\0" * (free - 4 * MIB))
        body = await _healthz_becomes(client, 503)
        assert body["database_message"].startswith("disk nearly full: ")
        assert "healthz_min_free_bytes is 16.0 MiB" in body["database_message"]
        filler.unlink()
        await _healthz_becomes(client, 200)


def test_damaged_pages_are_degraded_after_a_restart(tmp_path: Path) -> None:
    with LiveBroker(data_dir=tmp_path) as live, live.client() as client:
        for _ in range(30):
            assert client.post("/requests", json=notebook_request()).status_code == 303
    database = tmp_path / "execbroker.db"
    # Garbage over four pages past the schema's, as a failing disk or a stray write leaves
    # them; the broker still starts (its migrations read only the first pages).
    with database.open("r+b") as stream:
        stream.seek(3 * 4096)
        stream.write(b"\xa5" * 4 * 4096)

    live = LiveBroker(data_dir=tmp_path).start(ready=(200, 503))
    try:
        deadline = time.monotonic() + 15
        while (answer := httpx.get(f"{live.url}/healthz")).status_code != 503:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
    finally:
        live.stop()
    body = answer.json()
    assert body["status"] == "degraded"
    assert body["database_message"].startswith("the database is damaged: ")
    assert "Page 4" in body["database_message"]
    # One line in the broker's log says so, with the file's path.
    log = live.log.read_text()
    assert f"database {database} degraded" in log


async def test_pages_damaged_while_serving_are_degraded_once_a_query_meets_them(
    tmp_path: Path,
) -> None:
    async with _broker(_settings(tmp_path)) as client:
        for _ in range(30):
            assert (await client.post("/requests", json=notebook_request())).status_code == 303
        assert (await client.get("/healthz")).status_code == 200
        database = tmp_path / "execbroker.db"
        checkpoint = sqlite3.connect(database)  # what SQLite's own checkpoints do anyway
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        with database.open("r+b") as stream:
            stream.seek(3 * 4096)
            stream.write(b"\xa5" * 4 * 4096)
        # The heartbeat's own pages are sound: only a query that meets the damage tells.
        assert (await client.post("/requests", json=notebook_request())).status_code == 500
        body = await _healthz_becomes(client, 503)
    assert body["database_message"].startswith("the database is damaged: ")


@pytest.mark.alone  # another client's latency, measured
async def test_healthz_answers_at_once_while_writes_hang_then_says_so(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock: /healthz never waits for it (a balancer's
    probe does not time out), and once a write has waited 5 s it answers 503."""
    async with _broker(_settings(tmp_path)) as client:
        await _healthz_becomes(client, 200)
        holder = sqlite3.connect(tmp_path / "execbroker.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            slowest, answer = 0.0, None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                started = time.monotonic()
                answer = await client.get("/healthz")
                slowest = max(slowest, time.monotonic() - started)
                if answer.status_code == 503:
                    break
                await asyncio.sleep(0.2)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert answer is not None
        assert answer.status_code == 503
        assert answer.json()["database_message"] == (
            "writes fail: a write did not commit within 5 s"
        )
        assert slowest < 0.5
        await _healthz_becomes(client, 200)


async def test_a_read_only_postgresql_database_is_degraded(
    tmp_path: Path, postgres_database: str | None
) -> None:
    if postgres_database is None:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}")
    plain = postgres_database.replace("postgresql+psycopg://", "postgresql://", 1)
    name = plain.rsplit("/", 1)[1]

    def switch(*, read_only: bool) -> None:
        # From the server's own database: this one may refuse even the ALTER.
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
            admin.execute(f'ALTER DATABASE "{name}" {setting}')
            # The broker's pooled connections reconnect, and so take the new default.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    async with _broker(_settings(tmp_path, database_url=postgres_database)) as client:
        await _healthz_becomes(client, 200)
        switch(read_only=True)
        try:
            body = await _healthz_becomes(client, 503)
        finally:
            switch(read_only=False)
        assert body["database_message"].startswith("writes fail: ")
        assert "read-only transaction" in body["database_message"]
        await _healthz_becomes(client, 200)
