"""The README's two commands, as make will run them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_honours_port_and_serves_on_loopback() -> None:
    # -n: print what would run, without installing or starting anything.
    printed = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "run", "PORT=9123"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pip install --quiet -e ." in printed
    assert "execbroker serve --host 127.0.0.1 --port 9123" in printed
    tested = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "test"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pip install --quiet -e '.[test]'" in tested
    assert "-m pytest" in tested
    # Two pytest-xdist workers, one per core of the machines CI runs on.
    assert "-m pytest -n 2 --dist worksteal" in tested


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_check_lints_typechecks_and_runs_the_suite() -> None:
    """What CI runs: ruff and mypy on the tests too, then the same suite as ``make test``."""
    printed = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "check"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commands = [line.split("/bin/", 1)[-1] for line in printed.splitlines()]
    expected = [
        "ruff check src tests bench",
        "ruff format --check src tests bench",
        "mypy src tests",
        "python -m pytest",
    ]
    positions = [next(i for i, c in enumerate(commands) if c.startswith(e)) for e in expected]
    assert positions == sorted(positions), printed
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("\nmake check")
