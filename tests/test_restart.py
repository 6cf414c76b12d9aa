"""A broker killed twice with SIGKILL while 200 sessions run: nothing lost, nothing twice."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from execbroker.platforms.mock import read_ledger
from tests.support.engine import ROLES, container
from tests.support.live import LiveBroker

pytestmark = pytest.mark.slow  # 200 sessions through a broker process killed twice

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
SESSIONS = 200

# Planning estimates well above the mock's timings, so that a few seconds of the broker
# being down do not make a dependency late (which the rules rightly answer with FAILED).
ENV = {
    "EXECBROKER_PREPARE_ESTIMATES": json.dumps(dict.fromkeys(ROLES, 4)),
    "EXECBROKER_RELEASE_ESTIMATES": json.dumps(dict.fromkeys(ROLES, 1)),
    "EXECBROKER_PLANNING_SLACK": "0",
    "EXECBROKER_BUDGET_SLACK": "60",
    "EXECBROKER_POLL_INTERVAL": "0.2",
    "EXECBROKER_MOCK_PREPARE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0.2)),
    "EXECBROKER_MOCK_RELEASE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0.1)),
    "EXECBROKER_CAPACITY_CORES": "10000",
    "EXECBROKER_CAPACITY_MEMORY_GIB": "100000",
    "EXECBROKER_CAPACITY_STORAGE_GIB": "1000000",
    "EXECBROKER_LOG_LEVEL": "WARNING",
    "EXECBROKER_QUOTA_ACTIVE_SESSIONS": "1000",
}


def _script(rng: random.Random) -> tuple[dict[str, Any], str]:
    """A session to run and the phase it must end in."""
    environment = {
        "MOCK_PREPARE_SECONDS": f"{rng.uniform(0.05, 1.0):.2f}",
        "MOCK_RUN_SECONDS": f"{rng.uniform(0.1, 4.0):.2f}",
    }
    expected = "COMPLETED"
    roll = rng.random()
    if roll < 0.15:
        environment["MOCK_EXIT_CODE"] = "1"
        expected = "FAILED"
    elif roll < 0.25:
        environment["MOCK_FAIL_AT"] = "data:PREPARING"
        expected = "FAILED"
    elif roll < 0.35:
        environment["MOCK_RUN_SECONDS"] = "60"
        expected = "CANCELLED"  # by its user, while the broker is killed and restarted
    start = datetime.now(UTC) + timedelta(seconds=rng.uniform(0, 10))
    document = container(environment, start=f"{start:%Y-%m-%dT%H:%M:%SZ}/PT30S")
    return document, expected


def _parts(session: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        session,
        session["executable"],
        session["compute"],
        *session["storage"],
        *session["data"],
    ]


def _released(session: dict[str, Any]) -> bool:
    """A cancelled session is CANCELLED at once; its components end when released."""
    return all(part["phase"] in TERMINAL for part in _parts(session))


def test_two_kills_lose_nothing_and_repeat_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261128)  # noqa: S311 - a reproducible script, not a secret
    live = LiveBroker(data_dir=tmp_path, env=ENV).start()
    expected: dict[str, str] = {}
    try:
        with live.client(timeout=30) as client:
            for _ in range(SESSIONS):
                document, outcome = _script(rng)
                created = client.post("/direct", json=document)
                assert created.status_code == 303, created.text
                expected[created.headers["location"].rsplit("/", 1)[-1]] = outcome
            for uuid in [u for u, outcome in expected.items() if outcome == "CANCELLED"]:
                cancel = {"kind": "uri:enum-value-update", "path": "/phase", "value": "CANCELLED"}
                answer = client.post(f"/sessions/{uuid}", json=cancel)
                assert answer.status_code == 200, answer.text
                assert answer.json()["phase"] == "CANCELLED", "a cancel is final at once"
        for _ in range(2):
            time.sleep(rng.uniform(1.0, 4.0))
            live.kill()
            port = live.port
            live = LiveBroker(data_dir=tmp_path, env=ENV)
            live.port, live.url = port, f"http://127.0.0.1:{port}"
            live.start()

        deadline = time.monotonic() + 120
        with live.client(timeout=30) as client:
            while time.monotonic() < deadline:
                listed = client.get("/sessions", params={"last": 1000}).json()["sessions"]
                phases = {s["meta"]["uuid"]: s["phase"] for s in listed}
                if all(phases.get(u) in TERMINAL for u in expected) and all(
                    _released(client.get(f"/sessions/{u}").json())
                    for u, outcome in expected.items()
                    if outcome == "CANCELLED"
                ):
                    break
                time.sleep(0.5)
        assert set(phases) == set(expected), "no session lost"
        wrong = {u: (phases[u], want) for u, want in expected.items() if phases[u] != want}
        if wrong:
            with live.client(timeout=30) as client:
                first = client.get(f"/sessions/{next(iter(wrong))}").json()
            errors = [
                f"{part['meta'].get('name', 'session')}: {m['level']} {m['message']}"
                for part in _parts(first)
                for m in part["meta"]["messages"]
            ]
        assert not wrong, f"{len(wrong)} sessions ended unlike their scripts, e.g. {errors}"
    finally:
        live.stop()

    ledger = read_ledger(tmp_path / "mock-ledger.jsonl")
    prepared = Counter(e["component"] for e in ledger if e["action"] == "prepare")
    released = Counter(e["component"] for e in ledger if e["action"] == "release")
    assert prepared, "the platform was used"
    assert max(prepared.values()) == 1, "no component prepared twice"
    assert max(released.values()) == 1, "no component released twice"
    assert set(prepared) == set(released), "nothing left on the platform"
