"""The fake OIDC issuer the identity tests sign their tokens with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from execbroker.fakes.oidc import FakeOIDCProvider
from execbroker.fakes.server import ServerThread


@pytest.fixture
def issuer() -> Iterator[FakeOIDCProvider]:
    """An issuer (audience ``execbroker``) served on loopback for the test's duration."""
    provider = FakeOIDCProvider(audience="execbroker")
    server = ServerThread(provider.app())
    provider.issuer = server.url
    with server:
        try:
            yield provider
        finally:
            provider.hanging = False  # lets a stalled request end, so the server can stop
