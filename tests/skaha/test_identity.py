"""Per-user identity on Skaha (``auth = oidc``): every session runs as its owner.

The broker in-process (its real lifespan), the fake Skaha and the fake OIDC provider over
loopback HTTP. Users sign in to the broker with tokens for its own audience, which Skaha
refuses; the broker exchanges each for a Skaha token of the same user (RFC 8693).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from execbroker.platforms.skaha.credentials import Sealer
from tests.skaha.conftest import ACCOUNT, MakeWorld, SkahaWorld, redeems
from tests.skaha.documents import headless, notebook
from tests.support.engine import texts, until_ended
from tests.support.waiting import eventually
from tests.support.wire import phase_update, post, request_offers

KEY = Fernet.generate_key().decode()
BROKER_AUDIENCE = "execbroker"
SKAHA_AUDIENCE = "skaha"


def per_user(world: SkahaWorld, **overrides: Any) -> dict[str, Any]:
    """Broker settings for per-user mode against ``world``."""
    world.idp.exchange_audiences.add(SKAHA_AUDIENCE)
    return world.settings(
        **{
            "user": None,
            "auth": "oidc",
            "oidc_issuer": world.issuer,
            "oidc_audience": BROKER_AUDIENCE,
            "skaha_exchange_audience": SKAHA_AUDIENCE,
            "skaha_credential_key": KEY,
            **overrides,
        }
    )


def signed_in(world: SkahaWorld, name: str) -> dict[str, str]:
    """A bearer header for ``name``'s broker token (Skaha would refuse it as it is)."""
    token = world.idp.mint(name, audience=BROKER_AUDIENCE, lifetime=timedelta(minutes=10))
    assert world.idp.user_for(token) is None, "the broker's token is not a Skaha token"
    return {"Authorization": f"Bearer {token}"}


async def direct(client: httpx.AsyncClient, document: dict[str, Any], who: dict[str, str]) -> str:
    created = await post(client, "/direct", document, headers=who)
    assert created.status_code == 303, created.text
    return urlsplit(str(created.headers["location"])).path


def skaha_name(session: dict[str, Any]) -> str:
    return f"execbroker-{session['compute']['meta']['uuid']}"


def stored_credentials(tmp_path: Path) -> dict[str, str]:
    with sqlite3.connect(tmp_path / "broker.db") as connection:
        rows = connection.execute("SELECT account, sealed FROM skaha_credentials").fetchall()
    return {str(account): str(sealed) for account, sealed in rows}


async def healthz(client: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/healthz")).json()
    return body


async def test_alice_and_bob_run_on_skaha_as_themselves_and_see_only_their_own(
    broker: Any, world: SkahaWorld
) -> None:
    alice, bob = signed_in(world, "alice"), signed_in(world, "bob")
    async with broker(**per_user(world)) as client:
        alice_url = await direct(client, headless(2), alice)
        bob_url = await direct(client, headless(2), bob)

        assert (await client.get(alice_url, headers=bob)).status_code == 404
        assert (await client.get(bob_url, headers=alice)).status_code == 404
        health = await healthz(client)
        assert health["platform_identity"] == "per-user"
        assert health["users_with_credentials"] == 2

        async def on_skaha() -> dict[str, list[str]]:
            return {u: world.fake.session_ids(u) for u in ("alice", "bob")}

        seen = await eventually(
            on_skaha, lambda found: all(found.values()), what="both sessions on Skaha"
        )
        assert set(seen["alice"]).isdisjoint(seen["bob"]), "each sees only their own"

        client.headers.update(alice)
        alice_session = await until_ended(client, alice_url, seconds=30)
        client.headers.update(bob)
        bob_session = await until_ended(client, bob_url, seconds=30)

    assert alice_session["phase"] == "COMPLETED", texts(alice_session["compute"])
    assert bob_session["phase"] == "COMPLETED", texts(bob_session["compute"])
    creators = world.fake.creators()
    assert creators[skaha_name(alice_session)] == "alice"
    assert creators[skaha_name(bob_session)] == "bob"
    assert ACCOUNT not in creators.values(), "nothing ran as the broker's account"
    assert world.idp.exchange_grants == 2
    assert world.unauthenticated() == 0


async def test_a_refused_exchange_is_a_clear_403_and_nothing_is_accepted(
    broker: Any, world: SkahaWorld
) -> None:
    world.idp.exchange_denied.add("mallory")
    mallory = signed_in(world, "mallory")
    async with broker(**per_user(world)) as client:
        refused = await post(client, "/direct", headless(1), headers=mallory)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "platform_identity_refused"
        assert "access_denied" in refused.text
        assert "mallory may not get tokens for skaha" in refused.text, "the IdP's reason"

        offers = await request_offers_as(client, mallory)
        first = urlsplit(offers["offers"][0]["meta"]["url"]).path
        accept = await client.post(first, json=phase_update("ACCEPTED"), headers=mallory)
        assert accept.status_code == 403, accept.text
        assert "access_denied" in accept.text
        assert (await client.get(first, headers=mallory)).json()["phase"] == "OFFERED"

        listed = await client.get("/sessions", params={"phase": "ACCEPTED"}, headers=mallory)
        assert listed.status_code == 200
        assert (await healthz(client))["users_with_credentials"] == 0
    assert world.fake.launched() == [], "nothing reached Skaha"


async def request_offers_as(client: httpx.AsyncClient, who: dict[str, str]) -> dict[str, Any]:
    client.headers.update(who)
    try:
        return await request_offers(client, headless(1))
    finally:
        del client.headers["Authorization"]


async def test_a_revoked_refresh_token_stops_bob_alone(broker: Any, make_world: MakeWorld) -> None:
    # Access tokens of 4 s: refreshed every few seconds, with half a second's margin before
    # expiry (2 s left a quarter of a second, which a loaded CI machine overran once).
    world = make_world(access_ttl=timedelta(seconds=4))
    alice, bob = signed_in(world, "alice"), signed_in(world, "bob")
    async with broker(**per_user(world)) as client:
        alice_url = await direct(client, notebook("PT10S"), alice)
        bob_url = await direct(client, notebook("PT10S"), bob)
        await eventually(
            lambda: _phases(client, {alice_url: alice, bob_url: bob}),
            lambda phases: set(phases) == {"AVAILABLE"},
            what="both notebooks available",
            within=20,
        )
        assert world.idp.revoke_refresh_tokens("bob") >= 1

        health = await eventually(
            lambda: healthz(client),
            lambda body: body.get("users_to_log_in_again") == 1,
            what="/healthz counting bob",
            within=15,
        )
        assert "1 user(s) must sign in again" in health["platform_message"]
        client.headers.update(alice)
        alice_session = await until_ended(client, alice_url, seconds=30)

    assert alice_session["phase"] == "COMPLETED", texts(alice_session["compute"])
    assert world.idp.refresh_grants >= 3, "alice's token was refreshed all along"
    # bob's token was refused by the IdP, never by Skaha: nothing was sent with a dead one.
    assert world.unauthenticated() == 0


async def _phases(client: httpx.AsyncClient, sessions: dict[str, dict[str, str]]) -> list[str]:
    return [(await client.get(url, headers=who)).json()["phase"] for url, who in sessions.items()]


async def _until_available(client: httpx.AsyncClient, url: str, who: dict[str, str]) -> None:
    await eventually(
        lambda: _phases(client, {url: who}),
        lambda phases: phases == ["AVAILABLE"],
        what="the notebook available",
        within=20,
    )


async def test_refresh_tokens_are_encrypted_at_rest_and_never_logged(
    broker: Any, make_world: MakeWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world = make_world(access_ttl=timedelta(seconds=2))
    alice = signed_in(world, "alice")
    async with broker(**per_user(world)) as client:
        url = await direct(client, notebook("PT6S"), alice)
        await _until_available(client, url, alice)
        await eventually(
            lambda: _count(world), lambda grants: grants >= 1, what="a refresh", within=10
        )
        stored = stored_credentials(tmp_path)
        live = world.idp.refresh_tokens("alice")
        client.headers.update(alice)
        await until_ended(client, url, seconds=30)

    assert len(stored) == 1
    sealed = next(iter(stored.values()))
    assert live, "alice has a live refresh token"
    for token in live:
        assert token not in sealed
        assert token.split(".")[1] not in sealed, "not even its claims"
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    leaked = [token for token in world.idp.issued_tokens if token in logged]
    assert leaked == [], "no token in any log record"


async def _count(world: SkahaWorld) -> int:
    return world.idp.refresh_grants


async def test_a_restarted_broker_carries_on_with_the_stored_credentials(
    broker: Any, make_world: MakeWorld, tmp_path: Path
) -> None:
    world = make_world(access_ttl=timedelta(seconds=2))
    alice = signed_in(world, "alice")
    settings = per_user(world)
    async with broker(**settings) as client:
        url = await direct(client, notebook("PT8S"), alice)
        await _until_available(client, url, alice)
    grants = world.idp.refresh_grants
    async with broker(**settings) as client:
        client.headers.update(alice)
        session = await until_ended(client, url, seconds=60)  # CI: two workers, loaded

        # Once nothing of alice's holds, her credential is deleted.
        await eventually(
            lambda: _stored(tmp_path), lambda found: found == {}, what="no credential", within=20
        )

    assert session["phase"] == "COMPLETED", texts(session["compute"])
    assert world.idp.exchange_grants == 1, "the stored credential was used, not a new exchange"
    assert world.idp.refresh_grants > grants, "and refreshed after the restart"
    assert world.unauthenticated() == 0


async def test_a_broker_stopped_while_a_refresh_is_answered_stores_the_rotated_token(
    broker: Any, make_world: MakeWorld, tmp_path: Path
) -> None:
    """The IdP rotates on a refresh: once it has answered, only the new refresh token works.
    A broker stopped between that answer and the save would restart holding a dead grant."""
    world = make_world(access_ttl=timedelta(seconds=2))
    alice = signed_in(world, "alice")
    async with broker(**per_user(world)) as client:
        url = await direct(client, notebook("PT1M"), alice)
        await _until_available(client, url, alice)
        world.idp.token_answer_delay = 2.0
        grants = world.idp.refresh_grants
        await eventually(
            lambda: _count(world),
            lambda count: count > grants,
            what="a refresh granted (its answer held back 2 s)",
            within=10,
            interval=0.02,
        )
        # The broker stops now, with the rotated token still on its way to it.

    [sealed] = stored_credentials(tmp_path).values()  # alice's, under her account's key
    tokens, problem = Sealer(SecretStr(KEY)).open(sealed)
    assert problem is None
    assert await redeems(world, tokens.refresh_token), "the stored refresh token is the live one"


async def _stored(tmp_path: Path) -> dict[str, str]:
    return stored_credentials(tmp_path)


async def test_a_missing_credential_key_is_one_line_naming_the_setting(
    broker: Any, world: SkahaWorld
) -> None:
    settings = per_user(world)
    del settings["skaha_credential_key"]
    with pytest.raises(Exception, match="EXECBROKER_SKAHA_CREDENTIAL_KEY"):
        async with broker(**settings):
            pass


@pytest.mark.slow  # a broker process and the fakes for about 40 s
def test_three_users_with_5_second_tokens_have_no_authentication_failure() -> None:
    script = Path(__file__).resolve().parents[2] / "bench" / "skaha_identity.py"
    run = subprocess.run(
        [sys.executable, str(script), "--minutes", "0.6"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert "authentication failures: 0 " in run.stdout, run.stdout + run.stderr
    for user in ("alice", "bob", "carol"):
        completed = re.search(rf"{user}: COMPLETED (\d+); on Skaha as {user}: (\d+)", run.stdout)
        assert completed is not None, run.stdout
        assert int(completed[1]) >= 2, "each user kept sessions going"
    assert run.returncode == 0, run.stdout + run.stderr


async def test_a_refresh_token_near_its_end_is_warned_of_in_health_and_the_log(
    broker: Any, world: SkahaWorld, caplog: pytest.LogCaptureFixture
) -> None:
    world.idp.refresh_token_ttl = timedelta(days=3)  # SKA IAM's end after 30 days
    world.write_tokens()
    alice = signed_in(world, "alice")
    async with broker(**world.settings()) as client:
        single = await healthz(client)
    async with broker(**per_user(world)) as client:
        await direct(client, notebook("PT3S"), alice)
        users = await eventually(
            lambda: healthz(client),
            lambda body: body.get("refresh_tokens_expiring") == 1,
            what="alice's refresh token counted as ending soon",
        )

    assert single["platform_identity"] == "single-account"
    assert "can read each other's files" in single["platform_identity_note"]
    assert "refresh token of skaha_token_file ends at" in single["platform_message"]
    assert "(in 3.0 days)" in single["platform_message"]
    assert single["platform_status"] == "available", "a warning, not an outage"
    assert "end within the warning time" in users["platform_message"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "the Skaha refresh token ends soon; write new tokens to skaha_token_file" in warnings
    assert any("a user's Skaha refresh token ends soon" in w for w in warnings)


async def test_stored_credentials_under_another_key_are_one_error_and_a_new_sign_in(
    broker: Any, world: SkahaWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alice = signed_in(world, "alice")
    async with broker(**per_user(world)) as client:
        await direct(client, notebook("PT30S"), alice)
    assert len(stored_credentials(tmp_path)) == 1
    rekeyed = per_user(world, skaha_credential_key=Fernet.generate_key().decode())
    async with broker(**rekeyed) as client:
        health = await healthz(client)

    assert health["users_with_credentials"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("cannot be decrypted with skaha_credential_key" in e for e in errors), errors
    assert stored_credentials(tmp_path) == {}, "the unreadable row is dropped"
