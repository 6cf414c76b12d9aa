"""One broker for all the command-line tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.broker import RunningBroker, running_broker


@pytest.fixture(scope="session")
def cli_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(tmp_path_factory.mktemp("cli-broker")) as started:
        yield started
