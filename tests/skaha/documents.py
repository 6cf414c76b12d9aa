"""Request documents for runs on the fake Skaha."""

from __future__ import annotations

from typing import Any

from tests.skaha.conftest import TERMINAL
from tests.support.wire import example

DEMO_APP = "images.canfar.net/skaha/demo-app:1.0"
"""A web application image the fake Skaha lists for the contributed type."""


def headless(
    seconds: float = 1,
    environment: dict[str, str] | None = None,
    *,
    duration: str = "PT1M",
    cores: int = 1,
) -> dict[str, Any]:
    """A docker-container run: ``sleep <seconds>`` on Skaha's terminal image."""
    return {
        "executable": {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
            "executable/docker-container.yaml",
            "meta": {"name": "job"},
            "image": {"locations": [TERMINAL]},
            "entrypoint": "sleep",
            "command": [f"{seconds:g}"],
            "environment": environment or {},
        },
        "compute": {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
            "compute/simple-compute-resource.yaml",
            "meta": {"name": "job-compute"},
            "cores": {"min": cores, "max": cores},
            "memory": {"min": 2, "max": 2},
        },
        "schedule": {"requested": {"duration": duration}},
    }


def notebook(duration: str) -> dict[str, Any]:
    document: dict[str, Any] = example("notebook-request.yaml")
    document["schedule"] = {"requested": {"duration": duration}}
    return document


def web_app(
    image: str = DEMO_APP, *, port: int = 5000, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A container serving a web interface on ``port``, with the image's own entrypoint,
    and the executable fields ``extra``.
    """
    document = headless(duration="PT30S")
    executable = document["executable"]
    for name in ("entrypoint", "command", "environment"):
        del executable[name]
    executable["image"]["locations"] = [image]
    executable["network"] = {"ports": [{"access": True, "internal": {"port": port}}]}
    executable.update(extra or {})
    return document
