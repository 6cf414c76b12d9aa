"""Sessions run as real containers, seen from the API: exit codes, data, volumes, ports."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from execbroker.model import kinds
from tests.docker.support import LOOPBACK_ALLOWED, DockerCase, docker_request, output
from tests.support.engine import components, run_to_end, texts, until_ended
from tests.support.recording_server import recording_server
from tests.support.waiting import eventually
from tests.support.wire import phase_update, post, request_offers


async def wait_for_phase(
    client: httpx.AsyncClient, url: str, phase: str, *, seconds: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    session: dict[str, Any] = (await client.get(url)).json()
    while session["phase"] != phase and time.monotonic() < deadline:
        session = (await client.get(url, params={"wait": 2})).json()
    assert session["phase"] == phase, f"{session['phase']}, not {phase}: {texts(session)}"
    return session


@pytest.mark.parametrize(("code", "ending"), [(0, "COMPLETED"), (1, "FAILED"), (42, "FAILED")])
async def test_the_exit_code_decides_the_ending(case: DockerCase, code: int, ending: str) -> None:
    async with case.start() as client:
        session = await run_to_end(
            client, docker_request(f"echo about to exit {code}; exit {code}"), seconds=60
        )

    assert session["phase"] == ending, texts(session)
    compute = session["compute"]
    assert compute["phase"] == ("COMPLETED" if code == 0 else "FAILED")
    assert f"exited with code {code}" in texts(compute)
    assert f"about to exit {code}" in output(compute), "the log tail is in the messages"
    await case.assert_nothing_left()


async def test_a_killed_executable_is_reported_as_killed(case: DockerCase) -> None:
    async with case.start() as client:
        session = await run_to_end(client, docker_request("kill -KILL $$"), seconds=60)

    assert session["phase"] == "FAILED"
    assert "exited with code 137 (killed: out of memory?)" in texts(session["compute"])
    await case.assert_nothing_left()


async def test_data_is_staged_and_mounted_read_only_with_a_writable_scratch(
    case: DockerCase, data_server: tuple[str, Path]
) -> None:
    base, served = data_server
    content = os.urandom(300_000)
    (served / "catalogue.fits").write_bytes(content)
    expected = hashlib.sha256(content).hexdigest()
    script = (
        "sha256sum /input/catalogue.fits; "
        "if echo x > /input/tampered 2>/dev/null; then echo INPUT-WRITABLE; "
        "else echo input is read-only; fi; "
        "echo scratch-works > /scratch/result.txt && cat /scratch/result.txt; "
        "ls /scratch"
    )
    async with case.start(egress_allow=LOOPBACK_ALLOWED) as client:
        session = await run_to_end(
            client,
            docker_request(script, data=f"{base}/catalogue.fits", scratch=True),
            seconds=60,
        )

    assert session["phase"] == "COMPLETED", texts(session)
    parts = components(session)
    printed = output(session["compute"])
    assert f"{expected}  /input/catalogue.fits" in printed, "the container read the staged file"
    assert f"sha256 {expected}" in texts(parts["input"]), "the checksum is in the data's messages"
    assert "input is read-only" in printed
    assert "INPUT-WRITABLE" not in printed
    assert "scratch-works" in printed, "the scratch storage is writable"
    assert "input" in printed.split("scratch-works", 1)[1], "the data is inside its storage"
    await case.assert_nothing_left()


async def test_a_failed_download_fails_the_session_with_the_http_status(
    case: DockerCase, data_server: tuple[str, Path]
) -> None:
    base, _ = data_server
    async with case.start(egress_allow=LOOPBACK_ALLOWED) as client:
        session = await run_to_end(
            client, docker_request("true", data=f"{base}/no-such-file.fits"), seconds=60
        )

    assert session["phase"] == "FAILED"
    data = components(session)["input"]
    assert data["phase"] == "FAILED"
    assert "HTTP 404" in texts(data)
    assert session["compute"]["phase"] in ("CANCELLED", "FAILED"), "compute never ran"
    await case.assert_nothing_left()


async def test_the_requested_digest_is_checked(case: DockerCase) -> None:
    wrong = "sha256:" + "0" * 64
    async with case.start() as client:
        right, mismatched, absent = await asyncio.gather(
            run_to_end(
                client, docker_request("true", digest=case.runtime.image_digest), seconds=60
            ),
            run_to_end(client, docker_request("true", digest=wrong), seconds=60),
            run_to_end(client, docker_request("true", image="localhost/absent:1"), seconds=60),
        )

    assert right["phase"] == "COMPLETED", texts(right["executable"])
    assert mismatched["phase"] == "FAILED"
    assert f"not the requested {wrong}" in texts(mismatched["executable"])
    assert absent["phase"] == "FAILED"
    assert "is not on this machine and pulling images is disabled" in texts(absent["executable"])
    await case.assert_nothing_left()


async def test_cancel_mid_run_stops_and_removes_the_container(case: DockerCase) -> None:
    async with case.start() as client:
        created = await post(client, "/direct", docker_request("sleep 60", scratch=True))
        url = created.headers["location"]
        await wait_for_phase(client, url, "RUNNING")
        assert len(await case.containers()) == 1, "the container runs"
        began = time.monotonic()
        cancelled = await client.post(url, json=phase_update("CANCELLED"))
        assert cancelled.status_code == 200, cancelled.text
        session = await until_ended(client, url, seconds=30)

    assert session["phase"] == "CANCELLED"
    assert time.monotonic() - began < 10, "a cancel does not wait for the run to end"
    assert session["compute"]["phase"] == "CANCELLED"
    await case.assert_nothing_left()


async def test_a_requested_port_is_published_as_a_connector(case: DockerCase) -> None:
    ports = [{"internal": {"port": 8080}, "protocol": "HTTP", "path": "/index.html"}]
    request = docker_request("exec httpd -f -p 8080 -h /www", ports=ports)
    async with case.start() as client:
        created = await post(client, "/direct", request)
        url = created.headers["location"]
        session = await wait_for_phase(client, url, "RUNNING")
        deadline = time.monotonic() + 10
        while not session.get("connectors") and time.monotonic() < deadline:
            session = (await client.get(url, params={"wait": 1})).json()
        (connector,) = session["connectors"]
        assert connector["status"] == "AVAILABLE"
        assert connector["protocol"] == "HTTP"
        assert connector["location"].startswith("http://127.0.0.1:")
        assert connector["location"].endswith("/index.html")
        # Published on loopback, on a port of the configured range (default 20000-29999).
        assert 20000 <= int(connector["location"].rsplit(":", 1)[1].split("/")[0]) <= 29999
        page = await _fetch(connector["location"])
        assert "served from a container" in page
        await client.post(url, json=phase_update("CANCELLED"))
        session = await until_ended(client, url, seconds=30)

    assert session["connectors"][0]["status"] == "FINISHED"
    await case.assert_nothing_left()


async def _fetch(location: str) -> str:
    """The page, allowing the server in the container a moment to start listening."""
    async with httpx.AsyncClient(timeout=5) as web:

        async def page() -> str | None:
            try:
                return (await web.get(location)).text
            except httpx.TransportError:
                return None  # not listening yet

        text = await eventually(
            page, lambda text: text is not None, what=f"an answer at {location}", within=15
        )
    assert text is not None
    return text


async def test_the_end_of_the_offered_time_stops_the_container(case: DockerCase) -> None:
    async with case.start() as client:
        session = await run_to_end(
            client, docker_request("echo started; sleep 60", duration="PT3S"), seconds=60
        )

    assert session["phase"] == "COMPLETED", texts(session)
    assert "The offered time ended" in texts(session)
    assert "exited with code" not in texts(session["compute"]), "stopped, not failed"
    await case.assert_nothing_left()


async def test_data_the_platform_cannot_stage_is_refused_when_offered(
    case: DockerCase, tmp_path: Path
) -> None:
    document = docker_request("true", data="file:///etc/passwd")
    s3 = {
        "kind": kinds.DATA_S3,
        "meta": {"name": "bucket"},
        "endpoint": "https://s3.example.org",
        "bucket": "b",
        "template": "t",
        "object": "o",
    }
    document["data"].append(s3)
    async with case.start(docker_file_roots=[str(tmp_path)]) as client:
        offers = await request_offers(client, document)

    assert offers["result"] == "NO"
    said = " | ".join(m["message"] for m in offers["meta"]["messages"])
    assert "/data/0/location: file:///etc/passwd is not under a directory" in said
    assert "/data/1/kind: the docker platform stages only simple data resources" in said


async def test_the_brokers_own_token_hint_address_is_refused_when_offered(
    case: DockerCase,
) -> None:
    """Issue 14's token theft: staging the broker's own loopback pages is refused at once."""
    async with case.start() as client:
        for location in (
            "http://127.0.0.1:8080/ui/token-hint",
            "http://2130706433:8080/metrics",
            "http://localhost:8080/metrics",
        ):
            offers = await request_offers(client, docker_request("cat /input/*", data=location))
            assert offers["result"] == "NO"
            said = " | ".join(m["message"] for m in offers["meta"]["messages"])
            assert "/data/0/location: " in said
            assert "which the broker does not fetch from" in said


async def test_a_name_resolving_to_this_machine_is_refused_before_any_request(
    case: DockerCase,
) -> None:
    """A name is not refused when planned (no DNS then); when staged, it resolves to this
    machine (loopback here), and the download is refused without a byte sent."""
    name = socket.gethostname()
    with recording_server() as internal:
        async with case.start() as client:
            session = await run_to_end(
                client,
                docker_request("cat /input/*", data=f"http://{name}:{internal.port}/secret"),
                seconds=60,
            )
        assert internal.requests == []
    assert session["phase"] == "FAILED"
    data = components(session)["input"]
    assert f"downloading http://{name}:{internal.port}/secret refused: {name} is not allowed" in (
        texts(data)
    )
    assert "SECRET" not in texts(session)
    assert session["compute"]["phase"] in ("CANCELLED", "FAILED"), "compute never ran"
    await case.assert_nothing_left()


async def test_a_redirect_to_an_internal_service_is_refused(case: DockerCase) -> None:
    with recording_server() as allowed, recording_server() as internal:
        hidden = f"http://127.0.0.1:{internal.port}/secret"
        async with case.start(egress_allow=[f"127.0.0.1:{allowed.port}"]) as client:
            session = await run_to_end(
                client,
                docker_request("cat /input/*", data=f"{allowed.url}/redirect?to={hidden}"),
                seconds=60,
            )
        assert internal.requests == []
        assert len(allowed.requests) == 1
    assert session["phase"] == "FAILED"
    assert "127.0.0.1 is a loopback address" in texts(components(session)["input"])
    assert "SECRET" not in texts(session)
    await case.assert_nothing_left()


async def test_host_ports_come_from_the_configured_range(case: DockerCase) -> None:
    ports = [{"internal": {"port": 8080}, "protocol": "HTTP", "path": "/index.html"}]
    asked = [
        {"internal": {"port": 8080}, "external": {"port": 81}, "protocol": "HTTP"},
        {"internal": {"port": 8081}, "external": {"port": 20000}, "protocol": "HTTP"},
    ]
    async with case.start(docker_port_range="20500-20509") as client:
        refused = await request_offers(client, docker_request("true", ports=asked))
        created = await post(
            client, "/direct", docker_request("exec httpd -f -p 8080 -h /www", ports=ports)
        )
        url = created.headers["location"]
        session = await wait_for_phase(client, url, "RUNNING")
        deadline = time.monotonic() + 10
        while not session.get("connectors") and time.monotonic() < deadline:
            session = (await client.get(url, params={"wait": 1})).json()
        (connector,) = session["connectors"]
        published = int(connector["location"].rsplit(":", 1)[1].split("/")[0])
        assert "served from a container" in await _fetch(connector["location"])
        await client.post(url, json=phase_update("CANCELLED"))
        await until_ended(client, url, seconds=30)

    assert refused["result"] == "NO"
    said = " | ".join(m["message"] for m in refused["meta"]["messages"])
    assert (
        "/executable/network/ports/0/external/port: host port 81 is outside the ports this "
        "broker publishes on (20500-20509)"
    ) in said
    assert "ports/1/external/port: host port 20000 is outside" in said
    assert 20500 <= published <= 20509
    assert connector["location"].startswith("http://127.0.0.1:")
    await case.assert_nothing_left()


async def test_a_file_location_on_localhost_is_still_planned(
    case: DockerCase, tmp_path: Path
) -> None:
    """``file://localhost/…`` is this machine's file system, governed by the file roots: the
    egress policy's loopback rule does not apply to it."""
    (tmp_path / "ok.txt").write_text("fine")
    async with case.start(docker_file_roots=[str(tmp_path)]) as client:
        offers = await request_offers(
            client, docker_request("true", data=f"file://localhost{tmp_path}/ok.txt")
        )
    assert offers["result"] == "YES", offers["meta"]["messages"]
