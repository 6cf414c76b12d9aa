"""A broker killed with SIGKILL mid-run adopts its Skaha sessions when it comes back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tests.skaha.conftest import MakeWorld
from tests.skaha.documents import headless, notebook
from tests.support.engine import TERMINAL
from tests.support.live import LiveBroker
from tests.support.waiting import eventually_sync


def _phases(live: LiveBroker, paths: list[str]) -> dict[str, str]:
    with live.client(timeout=10) as client:
        return {path: client.get(path).json()["phase"] for path in paths}


def _until(live: LiveBroker, paths: list[str], wanted: set[str], seconds: float) -> dict[str, str]:
    return eventually_sync(
        lambda: _phases(live, paths),
        lambda phases: all(p in wanted for p in phases.values()),
        what=f"every session in {sorted(wanted)}",
        within=seconds,
        interval=0.2,
    )


def test_a_killed_broker_adopts_its_running_skaha_sessions(
    make_world: MakeWorld, tmp_path: Path
) -> None:
    world = make_world()
    data_dir = tmp_path / "broker"
    data_dir.mkdir()
    env = world.env(log_level="WARNING")
    live = LiveBroker(data_dir=data_dir, env=env).start()
    try:
        documents: list[dict[str, Any]] = [headless(4), notebook("PT4S")]
        with live.client(timeout=10) as client:
            paths = []
            for document in documents:
                created = client.post("/direct", json=document)
                assert created.status_code == 303, created.text
                paths.append("/" + created.headers["location"].split("/", 3)[3])
        up = _until(live, paths, {"RUNNING", "AVAILABLE"}, 15)
        assert sorted(up.values()) == ["AVAILABLE", "RUNNING"], up

        live.kill()
        assert len(world.sessions()) == 2, "the sessions run on without the broker"
        port = live.port
        live = LiveBroker(data_dir=data_dir, env=env)
        live.port, live.url = port, f"http://127.0.0.1:{port}"
        live.start()

        ended = _until(live, paths, TERMINAL, 20)
    finally:
        live.stop()

    assert set(ended.values()) == {"COMPLETED"}, ended
    names = Counter(name for _, name in world.fake.launched())
    assert len(names) == 2
    assert max(names.values()) == 1, "adopted, not started again"
    assert world.sessions() == []
