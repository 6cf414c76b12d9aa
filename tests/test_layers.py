"""Imports only point down, and the client library imports nothing of the server.

The contracts are ``[tool.importlinter]`` in ``pyproject.toml``: the layers, from the command
line and the composition root at the top, through handlers, services, planning and the
lifecycle, storage and platforms, down to the model; and the client package's forbidden
imports; and the handlers' (no SQL of their own). An upward import fails here with the chain
of imports that makes it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_RUN = (
    "import sys\n"
    "from importlinter.cli import lint_imports\n"
    "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))\n"
)


def lint_imports(config: Path, *, cwd: Path) -> tuple[int, str]:
    """Run import-linter on ``config`` (in a process of its own: it configures logging and
    ``sys.path`` for itself); its exit status and what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(config)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_imports_only_point_down_and_the_client_imports_no_server() -> None:
    status, report = lint_imports(ROOT / "pyproject.toml", cwd=ROOT)
    assert status == 0, f"an import points the wrong way (import-linter says):\n{report}"
    assert " 0 broken" in report


def test_an_upward_import_fails_and_names_its_edge(tmp_path: Path) -> None:
    package = tmp_path / "probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "high.py").write_text("")
    (package / "low.py").write_text("from probe import high\n")
    config = tmp_path / "pyproject.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "probe"\n\n'
        '[[tool.importlinter.contracts]]\nname = "down"\ntype = "layers"\n'
        'layers = ["probe.high", "probe.low"]\n'
    )
    status, report = lint_imports(config, cwd=tmp_path)
    assert status != 0
    assert "probe.low -> probe.high" in report
