"""The data directory is the broker's OS user's alone (SECURITY-PROBES-2 W2).

``execbroker serve`` runs as operators run it, with the usual umask (022) in its
environment; after a whole session on the mock platform nothing it created (the directory,
the SQLite database and its ``-wal``/``-shm``, the tokens file, the mock ledger) has a
group or other permission bit. A data directory or database that an operator left open is
named, with its mode, in one warning at start.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.broker import run_request
from tests.support.live import LiveBroker

WARNING = "other local users can reach the broker's data"
_FAST = {
    "EXECBROKER_MOCK_PREPARE_SECONDS": '{"executable": 0.1, "storage": 0.1, "compute": 0.1}',
    "EXECBROKER_MOCK_RELEASE_SECONDS": '{"executable": 0, "storage": 0.05, "compute": 0.05}',
}


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most shells give: what the broker must not rely on."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _modes(root: Path) -> dict[str, int]:
    """Every path under ``root`` (``.`` for ``root``) and its permission bits."""
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.lstat().st_mode)
        for path in [root, *root.rglob("*")]
    }


def _reachable_by_others(root: Path) -> dict[str, str]:
    return {name: f"{mode:04o}" for name, mode in _modes(root).items() if mode & 0o077}


def _broker(tmp_path: Path, data_dir: Path) -> LiveBroker:
    live = LiveBroker(data_dir=data_dir, env=_FAST)
    live.log = tmp_path / f"broker-{live.port}.log"  # not in the directory under test
    return live


def test_a_whole_session_leaves_nothing_other_users_can_reach(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with _broker(tmp_path, data_dir) as live, live.client() as client:
        created = client.post("/direct", json=run_request(MOCK_RUN_SECONDS="0.3"))
        assert created.status_code == 303, created.text
        session = client.get(created.headers["location"]).json()
        for _ in range(20):
            if session["phase"] == "COMPLETED":
                break
            session = client.get(created.headers["location"], params={"wait": 5}).json()
        assert session["phase"] == "COMPLETED"
        # While it serves: the database's -wal and -shm are there too.
        running = _modes(data_dir)
        assert _reachable_by_others(data_dir) == {}
    assert {"execbroker.db", "execbroker.db-wal", "tokens.yaml", "mock-ledger.jsonl"} <= set(
        running
    )
    assert running["."] == 0o700
    assert running["execbroker.db"] == 0o600
    assert _reachable_by_others(data_dir) == {}
    assert WARNING not in live.log.read_text()


def test_start_warns_once_naming_what_other_users_can_reach(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with _broker(tmp_path, data_dir):
        pass
    # As an operator (or an older broker) may have left them.
    data_dir.chmod(0o755)
    (data_dir / "execbroker.db").chmod(0o644)
    with _broker(tmp_path, data_dir) as live:
        pass
    warnings = [line for line in live.log.read_text().splitlines() if WARNING in line]
    assert len(warnings) == 1, live.log.read_text()
    assert "WARNING" in warnings[0]
    assert f"{data_dir} (mode 0755)" in warnings[0]
    assert f"{data_dir / 'execbroker.db'} (mode 0644)" in warnings[0]
    # What existed is left as the operator made it; what is new is private.
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755
    assert _reachable_by_others(data_dir) == {".": "0755", "execbroker.db": "0644"}
