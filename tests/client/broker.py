"""A real broker on a loopback port for the client and CLI tests, and requests to give it.

The broker is the app itself (``create_app``) served by uvicorn from a thread
(:class:`~execbroker.fakes.server.ServerThread`), with the fast mock timings of the engine
tests, so that a session runs from accept to COMPLETED in about a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from execbroker.config import DatabaseSettings, Settings
from execbroker.fakes.server import ServerThread
from execbroker.localtoken import local_token
from execbroker.main import create_app
from tests.support.engine import FAST, container


@dataclass(frozen=True)
class RunningBroker:
    url: str
    token: str
    data_dir: Path


@contextmanager
def running_broker(data_dir: Path) -> Iterator[RunningBroker]:
    settings = Settings(
        data_dir=data_dir,
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{data_dir / 'broker.db'}"),
        **FAST,
    )
    with ServerThread(create_app(settings)) as server:
        token = local_token(settings.effective_tokens_file, user=settings.auth.default_owner)
        assert token is not None
        yield RunningBroker(url=server.url, token=token, data_dir=data_dir)


def run_request(**environment: str) -> dict[str, Any]:
    """A container with one storage and no data, starting now, with ``MOCK_*`` settings."""
    return container(environment, data=False, duration="PT10M")


def request_file(directory: Path, name: str, **environment: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run_request(**environment)), encoding="utf-8")
    return path
