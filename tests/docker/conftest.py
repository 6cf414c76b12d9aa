"""Fixtures for the local container platform's tests: a real container runtime.

The runtime is the one ``DOCKER_HOST`` names, else the Podman that ``bash .ci/run
containers-up`` leaves under /tmp/execbroker-containers, else the default Docker socket.
Without one (or without the test image ``.ci/run`` builds) the tests are skipped with the
reason, except under ``CI=true``, where that is a failure: as for PostgreSQL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import aiodocker
import httpx
import pytest

from tests.docker.support import TEST_IMAGE, DockerCase, RuntimeInfo, leftovers

_CI_SOCKET = Path(
    os.environ.get("EXECBROKER_CONTAINERS_DIR", "/tmp/execbroker-containers")  # noqa: S108
) / ("podman.sock")
_DEFAULT_SOCKETS = (Path("/var/run/docker.sock"), Path("/run/podman/podman.sock"))


def _candidate() -> str | None:
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    for socket in (_CI_SOCKET, *_DEFAULT_SOCKETS):
        if socket.is_socket():
            return f"unix://{socket}"
    return None


def _get(url: str, path: str) -> httpx.Response:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        transport = httpx.HTTPTransport(uds=parts.path)
        with httpx.Client(transport=transport, base_url="http://runtime", timeout=5) as client:
            return client.get(path)
    base = url.replace("tcp://", "http://", 1)
    return httpx.get(base + path, timeout=5)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"a container runtime is required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def runtime() -> RuntimeInfo:
    """The container runtime the tests run on (skips, or fails under CI, without one)."""
    url = _candidate()
    if url is None:
        _unavailable("no container runtime: set DOCKER_HOST, or run `bash .ci/run containers-up`")
        raise AssertionError  # not reached
    try:
        version = _get(url, "/version").json()
    except (httpx.HTTPError, ValueError) as failure:
        _unavailable(f"the container runtime at {url} does not answer: {failure}")
        raise AssertionError from None
    image = _get(url, f"/images/{TEST_IMAGE}/json")
    if image.status_code != 200:
        _unavailable(
            f"the test image {TEST_IMAGE} is not in the runtime at {url}: "
            "`bash .ci/run containers-up` builds it"
        )
    names = " ".join(str(c.get("Name", "")) for c in version.get("Components") or [])
    podman = "podman" in names.lower()
    attributes = image.json()
    digests = [str(d).rpartition("@")[2] for d in attributes.get("RepoDigests") or []]
    return RuntimeInfo(
        url=url,
        podman=podman,
        image_id=str(attributes["Id"]),
        image_digest=digests[0] if digests else str(attributes["Id"]),
        # Podman: slirp4netns publishes ports without touching the host's firewall.
        network=os.environ.get(
            "EXECBROKER_TEST_DOCKER_NETWORK", "slirp4netns" if podman else "bridge"
        ),
    )


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the platform behaves the same on either database, and real containers
    are slow enough without running every case twice."""
    return f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def instance() -> str:
    """This test's broker-instance label: what it leaves behind is told apart by it."""
    return f"test-{uuid4().hex[:12]}"


@pytest.fixture
async def docker(runtime: RuntimeInfo) -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker(url=runtime.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def docker_settings(
    runtime: RuntimeInfo, instance: str, docker: aiodocker.Docker
) -> AsyncIterator[dict[str, Any]]:
    """Settings for a broker on the docker platform; afterwards, whatever a failed test
    left in the runtime is removed (the tests themselves assert that nothing is left)."""
    yield docker_overrides(runtime, instance)
    for entry in await leftovers(docker, instance):
        await docker.containers.container(entry["Id"]).delete(force=True)


@pytest.fixture
def case(  # noqa: PLR0917 - pytest passes one argument per fixture
    broker: Any,
    docker_settings: dict[str, Any],
    docker: aiodocker.Docker,
    instance: str,
    tmp_path: Path,
    runtime: RuntimeInfo,
) -> DockerCase:
    return DockerCase(
        broker=broker,
        settings=docker_settings,
        docker=docker,
        instance=instance,
        data_dir=tmp_path,
        runtime=runtime,
    )


def docker_overrides(runtime: RuntimeInfo, instance: str) -> dict[str, Any]:
    roles = ("executable", "compute", "storage", "data")
    return {
        "platform": "docker",
        "docker_host": runtime.url,
        "docker_instance": instance,
        "docker_pull": "never",  # tests never reach a registry
        "docker_network": runtime.network,
        "docker_stop_seconds": 1,
        "docker_log_lines": 10,
        # Planned times the real steps fit in, even with 20 sessions at once on 2 cores.
        "prepare_estimates": {"executable": 0.5, "storage": 0.5, "data": 1.5, "compute": 2.0},
        "release_estimates": dict.fromkeys(roles, 0.5),
        "planning_slack": 0,
        "budget_slack": 20,
        "poll_interval": 0.1,
        "capacity_cores": 64,
        "capacity_memory_gib": 256,
        "default_memory_gib": 1,
    }


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def data_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A local HTTP server for data resources: its base URL and the directory it serves."""
    root = tmp_path_factory.mktemp("served")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="data-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
