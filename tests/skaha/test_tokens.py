"""The token manager against the fake OIDC provider over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from execbroker.background import BackgroundTaskManager
from execbroker.clock import SystemClock
from execbroker.platforms.skaha import (
    SkahaCredentialsError,
    SkahaUnavailableError,
    TokenFileError,
    TokenManager,
)
from tests.skaha.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    MakeWorld,
    SkahaWorld,
    live_refresh_token,
    reading,
)
from tests.support.waiting import eventually


@asynccontextmanager
async def _manager(world: SkahaWorld, **options: object) -> AsyncIterator[TokenManager]:
    background = BackgroundTaskManager()
    async with httpx.AsyncClient(timeout=5) as http:
        manager = TokenManager(
            token_file=world.token_file,
            http=http,
            clock=SystemClock(),
            background=background,
            issuer=world.issuer,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            backoff=(0.5, 2.0),
            file_check=0.2,
            **options,  # type: ignore[arg-type]
        )
        await manager.start()
        try:
            yield manager
        finally:
            await background.stop()


async def test_refreshed_at_80_percent_with_the_rotated_token_persisted(
    make_world: MakeWorld,
) -> None:
    # JWT times are whole seconds: this token lives between 2 and 3 s from now.
    world = make_world(access_ttl=timedelta(seconds=3))
    first = world.read_tokens()
    async with _manager(world) as manager:
        await asyncio.sleep(0.8)  # the scenario: a while in which nothing may happen
        assert world.idp.refresh_grants == 0, "not before 80 % of the lifetime"
        # The manager's count: it moves once the new tokens are stored and in use (the
        # provider's moves when it answers, a moment before).
        await eventually(
            reading(lambda: manager.refreshes),
            lambda refreshes: refreshes >= 1,
            what="a refresh in the background",
            within=2.2,  # the token lives 2 to 3 s: before it expires
        )
        assert world.idp.refresh_grants == 1, "refreshed in the background before expiry"
        token = await manager.access_token()

    stored = world.read_tokens()
    assert stored["access_token"] == token != first["access_token"]
    assert stored["refresh_token"] != first["refresh_token"], "the rotated one replaced it"
    assert stat.S_IMODE(world.token_file.stat().st_mode) == 0o600
    assert not list(world.token_file.parent.glob(".*.tmp")), "no temporary file left"
    assert await live_refresh_token(world), "the stored refresh token is the live one"


async def test_concurrent_callers_share_one_refresh(make_world: MakeWorld) -> None:
    world = make_world(access_ttl=timedelta(seconds=60))
    world.write_tokens(lifetime=timedelta(seconds=0))  # already expired
    async with _manager(world) as manager:
        tokens = await asyncio.gather(*(manager.access_token() for _ in range(20)))
        stale = tokens[0]
        await asyncio.gather(*(manager.refresh(stale=stale) for _ in range(5)))
    assert len(set(tokens)) == 1
    assert world.idp.refresh_grants == 1


async def test_a_refused_refresh_token_needs_an_operator_and_is_said_once(
    world: SkahaWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with _manager(world) as manager:
        world.idp.revoke_refresh_tokens()
        for _ in range(3):
            with pytest.raises(SkahaCredentialsError):
                await manager.refresh()
        with pytest.raises(SkahaCredentialsError):
            await manager.access_token()
        problem = manager.problem
        assert problem is not None
        assert "invalid_grant" in problem
        assert str(world.token_file) in problem, "says which file to replace"
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, "logged once"
        assert errors[0].getMessage() == problem

        world.write_tokens()  # the operator's new tokens
        await eventually(
            reading(lambda: manager.problem), lambda problem: problem is None, what="no problem"
        )
        await manager.refresh()
        assert world.idp.refresh_grants == 1
    for secret in [*world.secrets_seen, CLIENT_SECRET]:
        assert secret not in caplog.text


async def test_an_idp_outage_is_retried_with_backoff_keeping_the_refresh_token(
    world: SkahaWorld,
) -> None:
    before = world.read_tokens()
    async with _manager(world) as manager:
        world.idp.idp_down = True
        with pytest.raises(SkahaUnavailableError) as down:
            await manager.refresh()
        assert not isinstance(down.value, SkahaCredentialsError)
        calls = world.idp.token_requests + world.idp.discovery_requests
        with pytest.raises(SkahaUnavailableError):
            await manager.refresh()
        assert world.idp.token_requests + world.idp.discovery_requests == calls, "backing off"
        assert manager.outage is not None
        assert manager.problem is None, "an outage is not a dead token"
        assert world.read_tokens() == before, "nothing discarded"

        world.idp.idp_down = False
        await eventually(  # the background task retries after its backoff
            reading(lambda: manager.outage), lambda outage: outage is None, what="the outage over"
        )
    assert world.idp.refresh_grants == 1
    assert world.read_tokens()["refresh_token"] != before["refresh_token"]


async def test_a_missing_or_malformed_token_file_is_a_configuration_error(
    world: SkahaWorld,
) -> None:
    world.token_file.write_text(json.dumps({"refresh_token": "x"}), encoding="utf-8")
    with pytest.raises(TokenFileError, match="no access_token"):
        async with _manager(world):
            pass
    world.token_file.unlink()
    with pytest.raises(TokenFileError, match="does not exist"):
        async with _manager(world):
            pass


async def test_a_token_without_refresh_token_is_used_until_refused(world: SkahaWorld) -> None:
    world.token_file.write_text(json.dumps({"access_token": "static-token"}), encoding="utf-8")
    async with _manager(world) as manager:
        assert await manager.access_token() == "static-token"
        with pytest.raises(SkahaUnavailableError, match="holds no refresh_token") as refused:
            await manager.refresh(stale="static-token")
        assert not isinstance(refused.value, SkahaCredentialsError)
        assert manager.problem is None, "a refusal may be Skaha losing its IdP: not dead"
        world.write_tokens()
        await eventually(  # a new file is picked up
            manager.access_token, lambda token: token != "static-token", what="the new token"
        )
        assert manager.outage is None
