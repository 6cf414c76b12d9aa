"""``execbroker serve --workers N``: N processes share the port on PostgreSQL; SQLite says no."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_URL
from tests.support.live import LiveBroker, free_port


def _workers(parent: int) -> list[int]:
    """The worker processes uvicorn spawned (not multiprocessing's resource tracker)."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for child in map(int, children):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:
            found.append(child)
    return found


def _connections(pid: int, port: int) -> int:
    """How many established TCP connections on ``port`` (this side) process ``pid`` holds."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            inodes.add(fields[9])
    held = 0
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(descriptor)
        except FileNotFoundError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


@pytest.mark.slow  # a broker of three processes
def test_two_workers_answer_on_one_port_and_stop_on_sigterm(
    tmp_path: Path, postgres_database: str | None
) -> None:
    if postgres_database is None:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}")
    live = LiveBroker(
        data_dir=tmp_path,
        env={"EXECBROKER_DATABASE_URL": postgres_database, "EXECBROKER_WORKERS": "2"},
    ).start(timeout=120)
    assert live.process is not None
    clients: list[httpx.Client] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers := _workers(live.process.pid)) < 2:
            assert time.monotonic() < deadline, "two workers did not start"
            time.sleep(0.2)
        assert len(workers) == 2
        # New connections, each kept open, until both workers hold some: both answer.
        while not all(_connections(worker, live.port) for worker in workers):
            assert time.monotonic() < deadline, "one worker never took a connection"
            client = live.client()
            clients.append(client)
            assert client.get("/sessions").status_code == 200
        assert len(set(workers)) == 2
    finally:
        for client in clients:
            client.close()
        live.process.send_signal(signal.SIGTERM)
        code = live.process.wait(timeout=60)
    assert code == 0, live.log.read_text()
    assert not any(Path(f"/proc/{worker}").exists() for worker in workers)
    assert "Traceback" not in live.log.read_text()


def test_more_than_one_worker_on_sqlite_is_refused_in_one_line(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXECBROKER_")}
    environment["EXECBROKER_DATA_DIR"] = str(tmp_path)
    finished = subprocess.run(
        [sys.executable, "-m", "execbroker", "serve", "--port", str(free_port()), "--workers", "2"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 1, finished.stderr
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert lines[0].startswith("error: cannot start 2 workers (--workers, EXECBROKER_WORKERS) on ")
    assert "SQLite" in lines[0]
    assert not (tmp_path / "execbroker.db").exists(), "refused before anything was created"
