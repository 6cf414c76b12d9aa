"""Request documents for runs on the fake Skaha."""

from __future__ import annotations

from typing import Any

from tests.skaha.conftest import TERMINAL
from tests.support.wire import example


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
