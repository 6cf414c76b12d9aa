"""The client commands against a real broker over loopback, and what their exit codes say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Protocol

import httpx
import pytest
import yaml
from typer.testing import CliRunner, Result

from execbroker.cli import app
from tests.client.broker import RunningBroker, request_file, run_request
from tests.support.live import free_port
from tests.support.waiting import eventually_sync

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Run(Protocol):
    """The ``run`` fixture: the command line against the test broker."""

    def __call__(self, *args: str, input: str | None = None) -> Result: ...


@pytest.fixture
def run(cli_broker: RunningBroker) -> Run:
    """``run(*args)``: the command line against the test broker; the click Result."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(
            app,
            ["--url", cli_broker.url, "--token", cli_broker.token, *args],
            input=input,
            catch_exceptions=False,
        )

    return invoke


def test_request_accept_best_status_and_watch_to_completion(run: Run, tmp_path: Path) -> None:
    path = request_file(tmp_path, "ok", MOCK_RUN_SECONDS="0.5")
    requested = run("request", str(path), "--accept", "best")
    assert requested.exit_code == 0, requested.output
    for column in ("start", "duration", "cores", "memory", "expires"):
        assert column in requested.stdout
    accepted = re.search(rf"Accepted offer (\d+) \(({UUID.pattern})\)", requested.stdout)
    assert accepted is not None, requested.stdout
    session = accepted.group(2)

    status = run("status", session)
    assert status.exit_code == 0
    assert session in status.stdout
    for part in ("Schedule", "Components", "batch-compute", "scratch", "preparing"):
        assert part in status.stdout

    watched = run("watch", session)
    assert watched.exit_code == 0, watched.output
    assert f"Session {session} ended COMPLETED (exit code 0)" in watched.stdout
    assert "compute batch-compute" in watched.stdout


def test_a_failed_session_exits_3_and_its_logs_say_why(run: Run, tmp_path: Path) -> None:
    path = request_file(tmp_path, "fails", MOCK_RUN_SECONDS="0.3", MOCK_EXIT_CODE="1")
    requested = run("request", str(path), "--accept", "1", "--quiet")
    assert requested.exit_code == 0, requested.output
    session = requested.stdout.strip()
    assert UUID.fullmatch(session)

    watched = run("watch", session)
    assert watched.exit_code == 3, watched.output
    assert "ended FAILED (exit code 1)" in watched.stdout

    logs = run("logs", session)
    assert logs.exit_code == 0
    lines = logs.stdout.splitlines()
    assert any("exited with code 1" in line and "compute" in line for line in lines)
    stamps = [line.split()[0] for line in lines if line.strip()]
    assert stamps == sorted(stamps)  # in time order

    failed = run("ls", "--phase", "failed")
    assert session in failed.stdout
    completed = run("ls", "-p", "COMPLETED")
    assert session not in completed.stdout


def test_cancel_extend_and_watch_a_cancelled_session(run: Run, tmp_path: Path) -> None:
    path = request_file(tmp_path, "long", MOCK_RUN_SECONDS="60")
    session = run("request", str(path), "--accept", "best", "-q").stdout.strip()
    extended = run("extend", session, "120")
    assert extended.exit_code == 0, extended.output
    assert "runs 12m" in extended.stdout  # PT10M asked for, 2 minutes more
    cancelled = run("cancel", session)
    assert cancelled.exit_code == 0
    watched = run("watch", session)
    assert watched.exit_code == 4, watched.output
    assert "ended CANCELLED" in watched.stdout
    too_late = run("accept", session)
    assert too_late.exit_code == 2
    assert "409 conflict" in too_late.stderr
    assert "CANCELLED" in too_late.stderr


def test_request_watch_from_standard_input(run: Run, tmp_path: Path) -> None:
    text = request_file(tmp_path, "stdin", MOCK_RUN_SECONDS="0.2").read_text()
    result = run("request", "-", "--accept", "best", "--watch", input=text)
    assert result.exit_code == 0, result.output
    assert "ended COMPLETED" in result.stdout


def test_exit_codes_for_refusals_and_usage(run: Run, cli_broker: RunningBroker) -> None:
    unknown = run("status", "00000000-0000-4000-8000-000000000000")
    assert unknown.exit_code == 2
    assert "404 not_found" in unknown.stderr

    no_offers = run("request", "-", input="compute:\n  cores:\n    min: 1\n")
    assert no_offers.exit_code == 2
    assert "/executable" in no_offers.stderr

    assert run("status", "not-a-uuid").exit_code == 1
    assert run("request", "-", "--accept", "cheapest", input="{}").exit_code == 1
    assert run("nonsense").exit_code == 1

    refused = CliRunner().invoke(app, ["--url", cli_broker.url, "--token", "x" * 20, "ls"])
    assert refused.exit_code == 2
    assert "401 unauthorized" in refused.stderr

    nowhere = CliRunner().invoke(app, ["--url", f"http://127.0.0.1:{free_port()}", "ls"])
    assert nowhere.exit_code == 5
    assert "cannot reach the broker" in nowhere.stderr


def test_the_installed_command_reports_a_failed_session(
    run: Run, cli_broker: RunningBroker, tmp_path: Path
) -> None:
    """The real entry point (a new process, env for URL and token) and its exit code."""
    path = request_file(tmp_path, "fails", MOCK_RUN_SECONDS="0.1", MOCK_EXIT_CODE="2")
    session = run("request", str(path), "--accept", "best", "-q").stdout.strip()
    environment = {"EXECBROKER_URL": cli_broker.url, "EXECBROKER_TOKEN": cli_broker.token}
    process = subprocess.run(
        [sys.executable, "-m", "execbroker", "watch", session],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **environment},
        check=False,
    )
    assert process.returncode == 3, process.stderr
    assert "ended FAILED (exit code 2)" in process.stdout


def test_help_documents_the_exit_codes() -> None:
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    lines = [" ".join(line.split()) for line in shown.stdout.splitlines()]
    assert "3 the watched session ended FAILED" in lines
    assert "5 the broker cannot be reached" in lines


def _dashboard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``execbroker dashboard`` as a new process, with only the environment given."""
    return subprocess.run(
        [sys.executable, "-m", "execbroker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env},
        check=False,
    )


def test_dashboard_prints_a_login_link_with_the_token_in_its_fragment(
    cli_broker: RunningBroker,
) -> None:
    local = {"EXECBROKER_DATA_DIR": str(cli_broker.data_dir), "EXECBROKER_URL": cli_broker.url}
    printed = _dashboard("dashboard", env=local)
    assert printed.returncode == 0, printed.stderr
    link = printed.stdout.strip()
    assert link == f"{cli_broker.url}/ui/#token={cli_broker.token}"
    # What a browser asks for is the page, without the fragment; the token works for the API.
    page_url, _, fragment = link.partition("#")
    assert httpx.get(page_url).status_code == 200
    token = fragment.removeprefix("token=")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{cli_broker.url}/sessions", headers=headers).status_code == 200


def test_dashboard_open_hands_the_link_to_the_browser(
    cli_broker: RunningBroker, tmp_path: Path
) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(0o755)
    given = {
        "EXECBROKER_URL": cli_broker.url,
        "EXECBROKER_TOKEN": "a token with / & # in it",
        "BROWSER": f"{browser} %s",
    }
    printed = _dashboard("dashboard", "--open", env=given)
    assert printed.returncode == 0, printed.stderr
    link = printed.stdout.strip()
    assert link == f"{cli_broker.url}/ui/#token=a%20token%20with%20%2F%20%26%20%23%20in%20it"
    # The browser command runs in the background.
    shown = eventually_sync(
        lambda: opened.exists() and opened.read_text(), what="the browser was given the link"
    )
    assert shown == link


def test_dashboard_without_a_token_says_how_to_get_one(tmp_path: Path) -> None:
    # A remote broker: the local tokens file is not read for it, and nothing is contacted.
    printed = _dashboard(
        "--url",
        "http://broker.example.org",
        "dashboard",
        env={"EXECBROKER_DATA_DIR": str(tmp_path)},
    )
    assert printed.returncode == 1
    assert printed.stdout == ""
    assert "no token for http://broker.example.org" in printed.stderr
    assert "--token" in printed.stderr


def _far_request(tmp_path: Path, name: str, *, window: str) -> Path:
    """40 of the pool's 64 cores for an hour, in a start interval of 2031 nobody else books."""
    document = run_request()
    document["compute"]["cores"] = {"min": 40, "max": 40}
    document["schedule"]["requested"] = {
        "start": f"2031-01-01T00:00:00Z/{window}",
        "duration": "PT1H",
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_a_refusal_says_what_would_fit_and_a_wait_says_why(run: Run, tmp_path: Path) -> None:
    first = run(
        "request", str(_far_request(tmp_path, "first", window="PT10M")), "--accept", "1", "-q"
    )
    assert first.exit_code == 0, first.output

    refused = run("request", str(_far_request(tmp_path, "same", window="PT10M")))

    assert refused.exit_code == 2
    fits = refused.stderr.split("would fit (each change on its own):", 1)[1]
    assert "→ fits with 24 cores instead of 40  [/compute/cores/min]" in fits
    assert "→ fits from 2031-01-01T01:00:" in fits
    later = run(
        "request", str(_far_request(tmp_path, "later", window="PT3H")), "--accept", "1", "-q"
    )
    assert later.exit_code == 0, later.output
    status = run("status", later.stdout.strip())
    assert "waits for its start at 2031-01-01T01:00:" in status.stdout
    why = " ".join(status.stdout.split("why not earlier:", 1)[1].split())
    assert why.startswith("at 2031-01-01T00:00:00Z, the earliest start the request allows, 24 of")
    assert "the 40 cores it needs are free" in why
    assert "by 1 session(s) accepted before it" in why
    for session in (first.stdout.strip(), later.stdout.strip()):
        assert run("cancel", session).exit_code == 0
