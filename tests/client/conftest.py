"""One broker for all the client tests (sessions are independent of each other)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.broker import RunningBroker, running_broker


@pytest.fixture(scope="session")
def client_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(tmp_path_factory.mktemp("client-broker")) as started:
        yield started
