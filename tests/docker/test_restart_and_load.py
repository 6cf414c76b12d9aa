"""A broker killed with SIGKILL while containers run, and twenty sessions at once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.docker.support import LOOPBACK_ALLOWED, DockerCase, docker_request, output
from tests.support.engine import TERMINAL, components, run_to_end, texts
from tests.support.live import LiveBroker
from tests.support.waiting import eventually


def _environment(settings: dict[str, Any]) -> dict[str, str]:
    """The settings as a broker process reads them: EXECBROKER_* variables."""
    return {
        f"EXECBROKER_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
        for name, value in settings.items()
    } | {"EXECBROKER_LOG_LEVEL": "WARNING"}


def _wait(client: httpx.Client, url: str, phases: set[str], *, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    session: dict[str, Any] = client.get(url).json()
    while session["phase"] not in phases and time.monotonic() < deadline:
        session = client.get(url, params={"wait": 2}).json()
    assert session["phase"] in phases, f"still {session['phase']}: {texts(session)}"
    return session


async def test_a_broker_killed_mid_run_adopts_its_containers_on_restart(
    case: DockerCase, data_server: tuple[str, Path]
) -> None:
    base, served = data_server
    (served / "kill.txt").write_bytes(b"staged before the kill\n")
    # Each run waits for the test to create /scratch/go: one is let go while the broker is
    # down, the other once the restarted broker has adopted it.
    gate = "while [ ! -e /scratch/go ]; do sleep 0.1; done"
    long_run = docker_request(
        f"cat /input/kill.txt; {gate}; echo survived > /scratch/out; cat /scratch/out",
        data=f"{base}/kill.txt",
        scratch=True,
    )
    short_run = docker_request(f"{gate}; echo ended while the broker was down", scratch=True)
    environment = _environment({**case.settings, "egress_allow": LOOPBACK_ALLOWED})
    live = LiveBroker(data_dir=case.data_dir, env=environment).start()
    try:
        with live.client(timeout=30) as client:
            long_url, short_url = (
                client.post("/direct", json=document).headers["location"]
                for document in (long_run, short_run)
            )
            long_gate, short_gate = (
                _storage(case, _wait(client, url, {"RUNNING"}, seconds=30)) / "go"
                for url in (long_url, short_url)
            )
        live.kill()
        assert len(await case.containers()) == 2, "the containers outlive the broker"
        short_gate.touch()
        await _until_exited(case, count=1)
        port = live.port
        live = LiveBroker(data_dir=case.data_dir, env=environment)
        live.port, live.url = port, f"http://127.0.0.1:{port}"
        live.start()
        with live.client(timeout=30) as client:
            assert client.get(long_url).json()["phase"] == "RUNNING", "adopted, still running"
            long_gate.touch()
            ended = [_wait(client, url, TERMINAL, seconds=30) for url in (long_url, short_url)]
    finally:
        live.stop()

    for session in ended:
        assert session["phase"] == "COMPLETED", texts(session)
        assert "exited with code 0" in texts(session["compute"])
    long_output = output(ended[0]["compute"])
    assert "staged before the kill" in long_output
    assert "survived" in long_output, "the scratch storage survived the restart"
    assert "ended while the broker was down" in output(ended[1]["compute"])
    await case.assert_nothing_left()


def _storage(case: DockerCase, session: dict[str, Any]) -> Path:
    """The host directory of the session's storage (where the test opens its gate)."""
    return case.data_dir / "docker" / "storage" / str(session["storage"][0]["meta"]["uuid"])


async def _until_exited(case: DockerCase, *, count: int) -> None:
    await eventually(
        case.containers,
        lambda containers: sum(c["State"] == "exited" for c in containers) >= count,
        what=f"{count} containers exited (the short run ended)",
        interval=0.1,
    )


async def test_twenty_sessions_at_once(case: DockerCase, data_server: tuple[str, Path]) -> None:
    base, served = data_server
    payloads = {f"part-{index}.dat": f"payload {index}\n".encode() * 1000 for index in range(20)}
    for name, content in payloads.items():
        (served / name).write_bytes(content)
    documents = [
        docker_request(
            f"sha256sum /input/{name}; sleep 1; echo done > /scratch/done",
            data=f"{base}/{name}",
            scratch=True,
        )
        for name in payloads
    ]
    began = time.monotonic()
    # Twenty downloads and containers at once on two cores: plan the staging generously.
    estimates = {**case.settings["prepare_estimates"], "data": 3.0}
    async with case.start(prepare_estimates=estimates, egress_allow=LOOPBACK_ALLOWED) as client:
        sessions = await asyncio.gather(
            *(run_to_end(client, document, seconds=90) for document in documents)
        )
    took = time.monotonic() - began

    assert [s["phase"] for s in sessions] == ["COMPLETED"] * 20, [
        texts(s) for s in sessions if s["phase"] != "COMPLETED"
    ]
    for (name, content), session in zip(payloads.items(), sessions, strict=True):
        expected = hashlib.sha256(content).hexdigest()
        assert f"{expected}  /input/{name}" in output(session["compute"])
        assert f"sha256 {expected}" in texts(components(session)["input"])
    assert took < 60, f"20 sessions took {took:.1f} s"
    await case.assert_nothing_left()
