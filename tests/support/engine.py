"""Fast timings for engine tests, and helpers to follow a session to its end."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from execbroker.platforms.mock import read_ledger
from tests.support.wire import example, post

ROLES = ("executable", "compute", "storage", "data")

FAST: dict[str, Any] = {
    "prepare_estimates": dict.fromkeys(ROLES, 0.3),
    "release_estimates": dict.fromkeys(ROLES, 0.1),
    "planning_slack": 0,
    "budget_slack": 2,
    "poll_interval": 0.1,
    "mock_prepare_seconds": dict.fromkeys(ROLES, 0.1),
    "mock_release_seconds": dict.fromkeys(ROLES, 0.05),
    "mock_run_seconds": 0.3,
    "end_warning": 0.5,
}
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
COMPONENT_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def container(
    environment: dict[str, str] | None = None,
    *,
    data: bool = True,
    duration: str = "PT1M",
    start: str | None = None,
) -> dict[str, Any]:
    """A docker run with one storage, one data resource mounted, and MOCK_* settings."""
    document: dict[str, Any] = example("container-with-data-request.yaml")
    document["executable"]["environment"] = {"OUTPUT_DIR": "/scratch", **(environment or {})}
    document["schedule"] = {"requested": {"duration": duration}}
    if start:
        document["schedule"]["requested"]["start"] = start
    if not data:
        document.pop("data")
        document["compute"]["volumes"] = document["compute"]["volumes"][1:]
    return document


async def run_to_end(
    client: httpx.AsyncClient, document: dict[str, Any], *, seconds: float = 20
) -> dict[str, Any]:
    created = await post(client, "/direct", document)
    assert created.status_code == 303, created.text
    return await until_ended(client, created.headers["location"], seconds=seconds)


async def until_phase_reached(
    client: httpx.AsyncClient, url: str, phase: str, *, seconds: float = 30
) -> dict[str, Any]:
    """The session once it is in ``phase``, waiting with the server's long-poll; fails at
    once if it ends first (rather than polling an ended session forever), or after
    ``seconds``.
    """
    deadline = time.monotonic() + seconds
    session: dict[str, Any] = (await client.get(url)).json()
    while session["phase"] != phase:
        assert session["phase"] not in TERMINAL, f"ended {session['phase']} before {phase}"
        assert time.monotonic() < deadline, f"still {session['phase']} after {seconds} s"
        session = (await client.get(url, params={"wait": 5})).json()
    return session


async def until_ended(
    client: httpx.AsyncClient, url: str, *, seconds: float = 20
) -> dict[str, Any]:
    """The session once it has ended and everything it held is released, waiting with the
    server's long-poll. (A cancelled session is CANCELLED at once, while its components
    are still being released.)"""
    deadline = time.monotonic() + seconds
    session: dict[str, Any] = (await client.get(url)).json()
    while not released(session) and time.monotonic() < deadline:
        if session["phase"] in TERMINAL:
            await asyncio.sleep(0.05)  # the phase is final: only the components change
            session = (await client.get(url)).json()
        else:
            session = (await client.get(url, params={"wait": 5})).json()
    assert session["phase"] in TERMINAL, (
        f"still {session['phase']} after {seconds} s: {_all_texts(session)}"
    )
    assert released(session), f"components still releasing after {seconds} s: {session}"
    return session


def _all_texts(session: dict[str, Any]) -> str:
    """Every message of the session and its components, for a failure to show."""
    return (
        " || ".join(
            f"{name} {part['phase']}: {texts(part)}" for name, part in components(session).items()
        )
        + f" || session: {texts(session)}"
    )


def released(session: dict[str, Any]) -> bool:
    """Whether the session has ended and every component with it."""
    return session["phase"] in TERMINAL and all(
        part["phase"] in COMPONENT_TERMINAL for part in components(session).values()
    )


def ledger_counts(data_dir: Path) -> tuple[Counter[str], Counter[str]]:
    """How many times each component was prepared, and released, on the mock platform."""
    entries = read_ledger(data_dir / "mock-ledger.jsonl")
    prepared = Counter(e["component"] for e in entries if e["action"] == "prepare")
    released = Counter(e["component"] for e in entries if e["action"] == "release")
    return prepared, released


def components(session: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every component of a session document by its name."""
    found = {session["executable"]["meta"]["name"]: session["executable"]}
    found[session["compute"]["meta"]["name"]] = session["compute"]
    for volume in session["compute"].get("volumes", []):
        found[volume["meta"]["name"]] = volume
    for part in [*session.get("storage", []), *session.get("data", [])]:
        found[part["meta"]["name"]] = part
    return found


def texts(document: dict[str, Any]) -> str:
    return " | ".join(m["message"] for m in document["meta"].get("messages", []))
