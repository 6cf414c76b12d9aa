"""Real containers on the docker platform: how fast a session starts, and how many run.

Starts a broker process (SQLite, ``EXECBROKER_PLATFORM=docker``) on the container runtime
that ``DOCKER_HOST`` names (else the Podman of ``bash .ci/run containers-up``), with the
test image ``localhost/execbroker-test:latest`` that ``.ci/run`` builds, and measures:

1. **accept → RUNNING** for the small image (busybox, 2 MB; executable and compute only):
   ``POST /requests``, then accept the first offer and time until the session is RUNNING,
   ``--starts`` times one after another. Also printed: how much of that the planner put
   before the compute's start (its estimates) and how long the platform took from the
   compute's "Preparing" to its "is running" (create + start of the container).
2. **sessions per minute with ``--concurrency`` at once**: ``--sessions`` direct sessions,
   each staging a small file from a local HTTP server into a storage, mounting it read-only
   and a scratch read-write, and printing the file's checksum; ``--concurrency`` clients run
   them back to back. Counts those that ended COMPLETED.

Planning estimates are set for a local runtime (``--estimates``): what an operator of this
platform would set. At the end it checks that the broker left no container behind.

    .venv/bin/python bench/containers.py
    .venv/bin/python bench/containers.py --starts 10 --sessions 100 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.docker.support import INSTANCE_LABEL, TEST_IMAGE, docker_request
from tests.support.live import LiveBroker

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
CI_SOCKET = Path("/tmp/execbroker-containers/podman.sock")  # noqa: S108 - .ci/run's


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _runtime_url() -> str:
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if CI_SOCKET.is_socket():
        return f"unix://{CI_SOCKET}"
    raise SystemExit("no container runtime: set DOCKER_HOST or run `bash .ci/run containers-up`")


def _runtime(url: str) -> httpx.Client:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return httpx.Client(transport=httpx.HTTPTransport(uds=parts.path), base_url="http://rt")
    return httpx.Client(base_url=url.replace("tcp://", "http://", 1))


async def _until(
    client: httpx.AsyncClient, url: str, phases: set[str], seconds: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    session: dict[str, Any] = (await client.get(url)).json()
    while session["phase"] not in phases and time.monotonic() < deadline:
        session = (await client.get(url, params={"wait": 5})).json()
    return session


async def _starts(client: httpx.AsyncClient, count: int) -> None:
    totals: list[float] = []
    planned: list[float] = []
    for _ in range(count):
        document = docker_request("sleep 1")
        offers = await client.post("/requests", json=document)
        offer = offers.json()["offers"][0]
        url = f"/sessions/{offer['meta']['uuid']}"
        accepted_at = time.time()
        answer = await client.post(
            url, json={"kind": "uri:enum-value-update", "path": "/phase", "value": "ACCEPTED"}
        )
        if answer.status_code != 200:
            raise RuntimeError(f"accept refused: {answer.text[:300]}")
        session = await _until(client, url, {"RUNNING", *TERMINAL})
        running_at = time.time()
        if session["phase"] != "RUNNING":
            raise RuntimeError(f"session ended {session['phase']} before running")
        start = session["compute"]["schedule"]["preparing"]["start"].split("/")[0]
        scheduled = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
        totals.append(running_at - accepted_at)
        planned.append(max(0.0, scheduled - accepted_at))
        await _until(client, url, TERMINAL)
    print(f"accept -> RUNNING      {len(totals)} sessions, one after another (small image)")
    print(
        f"  total  median {statistics.median(totals):.2f} s   "
        f"min {min(totals):.2f}  max {max(totals):.2f}"
    )
    after = [total - wait for total, wait in zip(totals, planned, strict=True)]
    print(f"  planned wait before the compute starts: median {statistics.median(planned):.2f} s")
    print(f"  compute's start to RUNNING (platform):  median {statistics.median(after):.2f} s")


async def _throughput(
    client: httpx.AsyncClient, *, sessions: int, concurrency: int, base: str
) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(sessions):
        queue.put_nowait(index)
    endings: list[str] = []
    reasons: Counter[str] = Counter()

    async def worker() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            document = docker_request(
                f"sha256sum /input/part-{index % 20}.dat; echo ok > /scratch/out",
                data=f"{base}/part-{index % 20}.dat",
                scratch=True,
            )
            created = await client.post("/direct", json=document)
            if created.status_code != 303:
                raise RuntimeError(f"direct refused: {created.text[:300]}")
            session = await _until(client, created.headers["location"], TERMINAL)
            endings.append(session["phase"])
            if session["phase"] != "COMPLETED":
                reasons.update(_errors(session))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    took = time.perf_counter() - began
    completed = endings.count("COMPLETED")
    print(f"throughput             {sessions} sessions, {concurrency} at once (data + scratch)")
    print(f"  all ended after      {took:.1f} s")
    print(f"  sessions per minute  {completed / took * 60:.0f}  ({completed} COMPLETED)")
    others = {phase: endings.count(phase) for phase in set(endings) - {"COMPLETED"}}
    if others:
        print(f"  not COMPLETED        {others}")
        for reason, count in reasons.most_common(3):
            print(f"    {count} x {reason}")


def _errors(session: dict[str, Any]) -> list[str]:
    parts = [session["executable"], session["compute"], *session["storage"], *session["data"]]
    return [
        message["message"]
        for part in parts
        for message in part["meta"].get("messages", [])
        if message["level"] == "ERROR"
    ][:1]


async def _main(arguments: argparse.Namespace) -> None:
    url = _runtime_url()
    with _runtime(url) as runtime:
        if runtime.get(f"/images/{TEST_IMAGE}/json").status_code != 200:
            raise SystemExit(f"{TEST_IMAGE} is missing: `bash .ci/run containers-up` builds it")
    served = Path(tempfile.mkdtemp(prefix="bench-served-"))
    for index in range(20):
        (served / f"part-{index}.dat").write_bytes(os.urandom(64 * 1024))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    instance = f"bench-{os.getpid()}"
    environment = {
        "EXECBROKER_PLATFORM": "docker",
        "EXECBROKER_DOCKER_HOST": url,
        "EXECBROKER_DOCKER_INSTANCE": instance,
        "EXECBROKER_DOCKER_PULL": "never",
        "EXECBROKER_PREPARE_ESTIMATES": arguments.estimates,
        "EXECBROKER_RELEASE_ESTIMATES": json.dumps(
            dict.fromkeys(json.loads(arguments.estimates), 0.5)
        ),
        "EXECBROKER_PLANNING_SLACK": "0",
        "EXECBROKER_BUDGET_SLACK": "30",
        "EXECBROKER_POLL_INTERVAL": str(arguments.poll),
        "EXECBROKER_DEFAULT_MEMORY_GIB": "1",
        "EXECBROKER_LOG_LEVEL": "WARNING",
    }
    print(
        f"execbroker bench/containers.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  "
        f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    print(f"runtime {url}; estimates {arguments.estimates}; poll {arguments.poll} s")
    with tempfile.TemporaryDirectory(prefix="bench-containers-") as data_dir:
        live = LiveBroker(data_dir=Path(data_dir), env=environment).start()
        try:
            async with httpx.AsyncClient(
                base_url=live.url, headers=live.headers, timeout=60
            ) as client:
                await _starts(client, arguments.starts)
                await _throughput(
                    client,
                    sessions=arguments.sessions,
                    concurrency=arguments.concurrency,
                    base=base,
                )
        finally:
            live.stop()
            server.shutdown()
    with _runtime(url) as runtime:
        filters = json.dumps({"label": [f"{INSTANCE_LABEL}={instance}"]})
        left = runtime.get("/containers/json", params={"all": 1, "filters": filters}).json()
    print(f"containers left behind {len(left)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="sessions timed to RUNNING")
    parser.add_argument("--sessions", type=int, default=60, help="sessions for throughput")
    parser.add_argument("--concurrency", type=int, default=20, help="sessions at once")
    parser.add_argument("--poll", type=float, default=0.2, help="engine poll interval, s")
    parser.add_argument(
        "--estimates",
        default=json.dumps({"executable": 0.2, "storage": 0.2, "data": 1.0, "compute": 0.5}),
        help="planning estimates per role (JSON, seconds)",
    )
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
