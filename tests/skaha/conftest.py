"""A fake Skaha and a fake OIDC provider on one loopback server, and broker settings for it.

The fake Skaha validates every bearer token with the fake provider (as Skaha asks the
issuer's ``userinfo``), so an expired, revoked or unverifiable token gets a 401 there, and
``idp.idp_down`` fails both the token endpoint and Skaha's checks, as in production.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from execbroker.fakes.oidc import DEFAULT_CLIENTS, FakeOIDCProvider
from execbroker.fakes.server import ServerThread
from execbroker.fakes.skaha import (
    Endpoint,
    FakeSkaha,
    SkahaCatalogue,
    SkahaTimings,
    create_skaha_app,
)

ACCOUNT = "ebsvc"  # the broker's own account on Skaha
CLIENT_ID, CLIENT_SECRET = next(iter(DEFAULT_CLIENTS.items()))
ROLES = ("executable", "compute", "storage", "data")
TERMINAL = "images.canfar.net/skaha/terminal:1.1.2"

FAST_TIMINGS = SkahaTimings(
    queue=timedelta(seconds=0.1),
    pull=timedelta(seconds=0.3),
    run=timedelta(seconds=1),
    terminating=timedelta(seconds=0.3),
    ttl_headless=timedelta(seconds=30),
    ttl_interactive=timedelta(seconds=30),
    session_expiry=timedelta(seconds=600),
)

# Broker settings: fast planning and polling, a short Skaha list interval.
FAST_BROKER: dict[str, Any] = {
    "prepare_estimates": {"executable": 0.2, "compute": 1.0, "storage": 0.2, "data": 0.2},
    "release_estimates": dict.fromkeys(ROLES, 0.2),
    "planning_slack": 0,
    "budget_slack": 2,
    "poll_interval": 0.2,
    "end_warning": 1,
    "skaha_list_interval": 0.3,
    "skaha_retry_budget": 5,
    "skaha_timeout": 5,
    "skaha_renew_interval": 0.3,
    "skaha_create_grace": 1,
    "skaha_lost_grace": 1,
    "skaha_sweep_interval": 1,
}


@dataclass
class SkahaWorld:
    """The fakes, where they listen, and the broker's token file for them."""

    fake: FakeSkaha
    idp: FakeOIDCProvider
    server: ServerThread
    token_file: Path
    secrets_seen: list[str] = field(default_factory=list)

    @property
    def skaha_url(self) -> str:
        return f"{self.server.url}/skaha"

    @property
    def issuer(self) -> str:
        return f"{self.server.url}/oidc"

    def write_tokens(self, *, lifetime: timedelta | None = None) -> dict[str, Any]:
        """Fresh tokens for the broker's account, written as an operator would."""
        ttl = lifetime or self.idp.access_token_ttl
        now = datetime.now(UTC)
        document = {
            "access_token": self.idp.mint(ACCOUNT, lifetime=ttl, issued_at=now),
            "refresh_token": self.idp.issue_refresh_token(ACCOUNT, CLIENT_ID),
            "expires_at": (now + ttl).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        temporary = self.token_file.with_suffix(".new")
        temporary.write_text(json.dumps(document), encoding="utf-8")
        temporary.chmod(0o600)
        os.replace(temporary, self.token_file)
        self.secrets_seen += [document["access_token"], document["refresh_token"]]
        return document

    def read_tokens(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.token_file.read_text(encoding="utf-8"))
        return document

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Broker settings for ``platform = skaha`` against these fakes."""
        return {
            **FAST_BROKER,
            "platform": "skaha",
            "skaha_url": self.skaha_url,
            "skaha_token_file": self.token_file,
            "skaha_oidc_issuer": self.issuer,
            "skaha_client_id": CLIENT_ID,
            "skaha_client_secret": CLIENT_SECRET,
            **overrides,
        }

    def env(self, **overrides: Any) -> dict[str, str]:
        """The same settings as ``EXECBROKER_*`` variables, for a broker subprocess."""
        values = self.settings(**overrides)
        encoded: dict[str, str] = {}
        for name, value in values.items():
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            encoded[f"EXECBROKER_{name.upper()}"] = text
        return encoded

    def sessions(self) -> list[str]:
        """The ids of the account's sessions on the fake that are not being deleted."""
        return [
            sid
            for sid in self.fake.session_ids(ACCOUNT)
            if self.fake.session_status(sid) not in (None, "Terminating")
        ]

    def unauthenticated(self) -> int:
        """Skaha requests whose token was refused (an auth failure the broker suffered)."""
        authenticated = {Endpoint.AVAILABILITY, Endpoint.CAPABILITIES, Endpoint.CONNECT}
        return sum(
            1
            for request in self.fake.request_log()
            if request.user is None and request.endpoint not in authenticated
        )


MakeWorld = Callable[..., SkahaWorld]


async def live_refresh_token(world: SkahaWorld) -> bool:
    """Whether the provider still takes the refresh token in the file (after a rotation
    only the newest one works): redeems it, so call it last."""
    return await redeems(world, world.read_tokens()["refresh_token"])


async def redeems(world: SkahaWorld, refresh_token: str | None) -> bool:
    """Whether the provider takes ``refresh_token`` (after a rotation only the newest one
    works): redeems it, so call it last."""
    async with httpx.AsyncClient() as client:
        grant = await client.post(
            f"{world.issuer}/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
    return grant.status_code == 200


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Skaha tests run on SQLite only: the platform's behaviour does not depend on it."""
    return f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[MakeWorld]:
    """``make_world(timings=..., catalogue=..., access_ttl=...)``: started fakes."""
    started: list[ServerThread] = []

    def build(
        *,
        timings: SkahaTimings = FAST_TIMINGS,
        catalogue: SkahaCatalogue | None = None,
        access_ttl: timedelta = timedelta(minutes=5),
        rotate: bool = True,
    ) -> SkahaWorld:
        idp = FakeOIDCProvider(
            audience="skaha", access_token_ttl=access_ttl, rotate_refresh_tokens=rotate
        )
        fake = FakeSkaha(idp, timings=timings, catalogue=catalogue, seed=7)
        server = ServerThread(create_skaha_app(fake, mounts={"/oidc": idp.app()}))
        idp.issuer = f"{server.url}/oidc"
        fake.issuer_url = idp.issuer
        server.start()
        started.append(server)
        world = SkahaWorld(fake, idp, server, tmp_path / "skaha-tokens.json")
        world.write_tokens()
        return world

    yield build
    for server in started:
        server.stop()


@pytest.fixture
def world(make_world: MakeWorld) -> SkahaWorld:
    return make_world()


T = TypeVar("T")


def reading(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """``read`` (of a fake's or an object's state, kept in memory) as
    :func:`tests.support.waiting.eventually` calls it."""

    async def now() -> T:
        return read()

    return now
