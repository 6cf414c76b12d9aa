"""``execbroker`` commands give the local token only to the local user's own broker
(SECURITY-PROBES-2 W9): against a port another OS user holds, a command sends no token and
says which uid holds the port, and ``execbroker dashboard`` prints no link."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.squatter import NOBODY, listener

LOCAL_TOKEN = "local-token-W9-cli-0123456789abcdef"


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a local user whose broker's tokens file is in ``tmp_path``."""
    (tmp_path / "tokens.yaml").write_text(yaml.safe_dump({"tokens": {LOCAL_TOKEN: "local"}}))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXECBROKER_")}
    return environment | {"EXECBROKER_DATA_DIR": str(tmp_path)}


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "execbroker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_command_sends_no_local_token_to_a_port_another_user_holds(
    local_env: dict[str, str],
) -> None:
    with listener("127.0.0.1", uid=NOBODY) as squatter:
        listed = _cli("--url", f"http://127.0.0.1:{squatter.port}", "ls", env=local_env)
        assert squatter.stop() == ["-"]
    assert LOCAL_TOKEN not in listed.stdout + listed.stderr
    assert listed.returncode == 2, listed.stderr
    said = " ".join(listed.stderr.split())
    assert (
        f"The local token was not sent: port {squatter.port} on 127.0.0.1 is held by a "
        f"process of uid {NOBODY}, not by your own broker (uid {os.geteuid()})."
    ) in said
    assert "Give a token" not in said


def test_dashboard_prints_no_link_for_a_port_another_user_holds(
    local_env: dict[str, str],
) -> None:
    with listener("127.0.0.1", uid=NOBODY) as squatter:
        url = f"http://127.0.0.1:{squatter.port}"
        printed = _cli("dashboard", env={**local_env, "EXECBROKER_URL": url})
        squatter.stop()
    assert printed.returncode == 1
    assert printed.stdout == ""
    assert LOCAL_TOKEN not in printed.stderr
    said = " ".join(printed.stderr.split())
    assert f"no link printed: the local token was not sent: port {squatter.port}" in said
    assert f"uid {NOBODY}" in said


def test_dashboard_prints_no_link_when_nothing_listens(local_env: dict[str, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    printed = _cli("--url", f"http://127.0.0.1:{port}", "dashboard", env=local_env)
    assert printed.returncode == 1
    assert printed.stdout == ""
    assert f"nothing listens on port {port}" in " ".join(printed.stderr.split())


def test_a_refused_local_token_is_named_not_asked_for(local_env: dict[str, str]) -> None:
    with listener("127.0.0.1", uid=None) as own:
        listed = _cli("--url", f"http://127.0.0.1:{own.port}", "ls", env=local_env)
        assert own.stop() == [f"Bearer {LOCAL_TOKEN}"]
    assert listed.returncode == 2
    said = " ".join(listed.stderr.split())
    assert "The local token from" in said
    assert "Give a token" not in said
