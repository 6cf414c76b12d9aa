"""Requests for the test image, and what a test checks is left in the runtime and on disk."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import httpx

from execbroker.model import kinds

TEST_IMAGE = "localhost/execbroker-test:latest"
# The test data server listens on loopback, which the egress policy denies: a test that
# stages from it says so (egress_allow=LOOPBACK_ALLOWED).
LOOPBACK_ALLOWED = ["127.0.0.1"]
INSTANCE_LABEL = "org.ivoa.execbroker.instance"


@dataclass(frozen=True)
class RuntimeInfo:
    url: str
    podman: bool
    image_id: str
    image_digest: str
    network: str


@dataclass(frozen=True)
class DockerCase:
    """One test's broker on the docker platform, and the runtime to check it against."""

    broker: Any  # tests/conftest.py's ``broker`` fixture
    settings: dict[str, Any]
    docker: aiodocker.Docker
    instance: str
    data_dir: Path
    runtime: RuntimeInfo

    def start(self, **overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        """``async with case.start() as client``: the broker through its lifespan."""
        started: AbstractAsyncContextManager[httpx.AsyncClient] = self.broker(
            **{**self.settings, **overrides}
        )
        return started

    async def containers(self) -> list[dict[str, Any]]:
        return await leftovers(self.docker, self.instance)

    async def assert_nothing_left(self) -> None:
        await assert_nothing_left(self.docker, self.instance, self.data_dir)


def docker_request(
    script: str,
    *,
    data: str | None = None,
    scratch: bool = False,
    duration: str = "PT2M",
    digest: str | None = None,
    image: str = TEST_IMAGE,
    ports: list[dict[str, Any]] | None = None,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A docker-container run of ``sh -c script`` in the test image, with 1 core and 1 GiB;
    ``data``: a URL staged into storage 'scratch' and mounted read-only at /input;
    ``scratch``: that storage mounted read-write at /scratch."""
    executable: dict[str, Any] = {
        "kind": kinds.EXECUTABLE_DOCKER,
        "meta": {"name": "task"},
        "image": {"locations": [image]},
        "entrypoint": "/bin/sh",
        "command": ["-c", script],
    }
    if digest:
        executable["image"]["digest"] = digest
    if environment:
        executable["environment"] = environment
    if ports:
        executable["network"] = {"ports": ports}
    document: dict[str, Any] = {
        "executable": executable,
        "compute": {
            "kind": kinds.COMPUTE_SIMPLE,
            "meta": {"name": "box"},
            "cores": {"min": 1, "max": 1},
            "memory": {"min": 1, "max": 1},
            "volumes": [],
        },
        "schedule": {"requested": {"duration": duration}},
    }
    if data or scratch:
        document["storage"] = [
            {"kind": kinds.STORAGE_SIMPLE, "meta": {"name": "scratch"}, "size": {"min": 1}}
        ]
    if data:
        document["data"] = [
            {
                "kind": kinds.DATA_SIMPLE,
                "meta": {"name": "input"},
                "location": data,
                "storage": "scratch",
            }
        ]
        document["compute"]["volumes"].append(
            {
                "meta": {"name": "input-mount"},
                "path": "/input",
                "mode": "READONLY",
                "resource": "input",
            }
        )
    if scratch:
        document["compute"]["volumes"].append(
            {
                "meta": {"name": "scratch-mount"},
                "path": "/scratch",
                "mode": "READWRITE",
                "resource": "scratch",
            }
        )
    return document


async def leftovers(docker: aiodocker.Docker, instance: str) -> list[dict[str, Any]]:
    """Containers carrying this instance's label, running or not."""
    filters = json.dumps({"label": [f"{INSTANCE_LABEL}={instance}"]})
    found = await docker.containers.list(all=True, filters=filters)
    return [dict(item._container) for item in found]


def files_left(data_dir: Path) -> list[str]:
    """What the platform keeps on disk for live objects: storage directories, records."""
    root = data_dir / "docker"
    found = [*(root / "storage").glob("*"), *(root / "objects").glob("*")]
    return sorted(str(path.relative_to(root)) for path in found)


async def assert_nothing_left(docker: aiodocker.Docker, instance: str, data_dir: Path) -> None:
    assert await leftovers(docker, instance) == [], "no container is left"
    assert files_left(data_dir) == [], "no storage directory, staged data or record is left"


def output(component: dict[str, Any]) -> str:
    """The container output the platform recorded in the compute's messages."""
    return "\n".join(
        m["values"].get("output", "")
        for m in component["meta"].get("messages", [])
        if "output" in (m.get("values") or {})
    )
