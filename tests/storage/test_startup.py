"""``execbroker serve`` on storage it cannot use: one line naming the path, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.live import LiveBroker, free_port


def _serve(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXECBROKER_")}
    environment |= {"EXECBROKER_DATA_DIR": str(data_dir), **env}
    return subprocess.run(
        [sys.executable, "-m", "execbroker", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def _one_line(finished: subprocess.CompletedProcess[str]) -> str:
    assert finished.returncode == 1, finished.stderr
    assert "Traceback" not in finished.stderr + finished.stdout
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert lines[0].startswith("error: cannot start: ")
    return lines[0]


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write in, root included: a read-only tmpfs where this user
    may mount one, an immutable directory where it may set that, else mode 0555 (enough
    for anyone but root)."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    mount = shutil.which("mount") or "/bin/mount"
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode == 0:
        yield path
        subprocess.run([shutil.which("umount") or "/bin/umount", str(path)], check=True)
        return
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(path)], check=False).returncode == 0:
        yield path
        subprocess.run([chattr, "-i", str(path)], check=True)
        return
    pytest.skip("as root here, neither a read-only mount nor chattr +i is allowed")


def test_a_read_only_data_dir_is_one_line_naming_it(read_only_dir: Path) -> None:
    line = _one_line(_serve(read_only_dir))
    assert f"data_dir {read_only_dir} (EXECBROKER_DATA_DIR) is not writable" in line


def test_a_data_dir_under_a_regular_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / "a-file" / "var"
    line = _one_line(_serve(data_dir))
    assert f"data_dir {data_dir} (EXECBROKER_DATA_DIR) cannot be created" in line
    assert line.endswith("Not a directory")


def test_a_database_file_in_a_read_only_place_is_one_line_naming_it(
    tmp_path: Path, read_only_dir: Path
) -> None:
    database = read_only_dir / "broker.db"
    line = _one_line(
        _serve(tmp_path / "var", EXECBROKER_DATABASE_URL=f"sqlite+aiosqlite:///{database}")
    )
    assert f"the database file {database} (EXECBROKER_DATABASE_URL) cannot be opened" in line


def test_a_file_that_is_not_a_database_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "execbroker.db").write_bytes(b"\x5a" * 8192)
    line = _one_line(_serve(tmp_path))
    assert f"the database file {tmp_path / 'execbroker.db'} (EXECBROKER_DATA_DIR)" in line
    assert line.endswith("file is not a database")


def test_an_unreachable_database_server_is_named_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://broker:s3cret-pw@127.0.0.1:{free_port()}/broker"
    line = _one_line(_serve(tmp_path, EXECBROKER_DATABASE_URL=url))
    assert "postgresql+psycopg://broker:***@127.0.0.1:" in line
    assert "s3cret-pw" not in line
    assert "Connection refused" in line


def test_the_broker_starts_once_the_directory_is_usable(tmp_path: Path) -> None:
    """The check is no obstacle to a usable directory, created on the way: it serves."""
    data_dir = tmp_path / "fresh" / "var"
    env = {"EXECBROKER_DATA_DIR": str(data_dir), "EXECBROKER_TOKENS_FILE": str(tmp_path / "t.yaml")}
    with LiveBroker(data_dir=tmp_path, env=env) as live:
        assert httpx.get(f"{live.url}/healthz").json()["status"] == "ok"
    assert (data_dir / "execbroker.db").exists()
