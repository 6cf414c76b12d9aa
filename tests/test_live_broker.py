"""The broker as a real process over real HTTP: start, serve, die, restart, carry on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.engine import released
from tests.support.live import LiveBroker
from tests.support.waiting import eventually_sync
from tests.support.wire import example, phase_update

pytestmark = pytest.mark.slow  # broker processes, killed and restarted


def _snapshot(client: httpx.Client, urls: list[str]) -> dict[str, Any]:
    return {url: client.get(url).json() for url in urls}


def test_everything_reads_back_identically_after_a_kill(tmp_path: Path, database_url: str) -> None:
    env = {"EXECBROKER_DATABASE_URL": database_url}
    first = LiveBroker(data_dir=tmp_path, env=env).start()
    try:
        with first.client() as client:
            created = client.post("/requests", json=example("container-with-data-request.yaml"))
            assert created.status_code == 303
            # Starts in 2030: once accepted it waits, so nothing moves between snapshots.
            offers = client.post("/requests", json=example("notebook-request.yaml")).json()
            client.post(offers["offers"][1]["meta"]["url"], json=phase_update("ACCEPTED"))
            direct = client.post("/direct", json=example("direct-request.json")).json()
            client.post(direct["meta"]["url"], json=phase_update("CANCELLED"))
            # Let the engine finish releasing, so that nothing moves between the snapshots:
            # the session is CANCELLED at once, its components once they are released.
            eventually_sync(
                lambda: client.get(direct["meta"]["url"]).json(),
                released,
                what="the cancelled direct run released",
                within=30,
            )
            refused = client.post("/requests", json={"compute": {}}).json()
            urls = [
                created.headers["location"],
                offers["meta"]["url"],
                direct["meta"]["url"],
                refused["meta"]["url"],
                direct["executable"]["meta"]["url"],
                *(v["meta"]["url"] for v in created.json()["offers"][0]["compute"]["volumes"]),
            ]
            before = _snapshot(client, urls)
    finally:
        first.kill()

    # Same port, so that the URLs in the documents are the same.
    second = LiveBroker(data_dir=tmp_path, env=env)
    second.port, second.url = first.port, first.url
    with second, second.client() as client:
        after = _snapshot(client, urls)

    assert after == before
    assert before[offers["meta"]["url"]]["offers"][1]["phase"] == "WAITING"
    assert before[direct["meta"]["url"]]["phase"] == "CANCELLED"
    assert before[refused["meta"]["url"]]["result"] == "NO"


def test_serve_prints_where_it_listens(tmp_path: Path) -> None:
    with LiveBroker(data_dir=tmp_path) as live:
        assert httpx.get(f"{live.url}/healthz").json()["status"] == "ok"
    log = live.log.read_text()
    assert f"execbroker listening on http://127.0.0.1:{live.port}" in log
    assert (tmp_path / "execbroker.db").exists()
