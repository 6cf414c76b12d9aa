"""JWT bearer tokens checked against a (fake) OIDC issuer's discovery document and keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from execbroker.fakes.oidc import FakeOIDCProvider
from tests.conftest import BrokerClient
from tests.support.users import bearer
from tests.support.wire import notebook_request, post, request_offers


@pytest.fixture
async def client(
    broker: BrokerClient, issuer: FakeOIDCProvider
) -> AsyncIterator[httpx.AsyncClient]:
    async with broker(
        user=None,
        auth="oidc",
        oidc_issuer=issuer.issuer,
        oidc_audience="execbroker",
        oidc_jwks_refresh=0,
        admins=[issuer.subject_for("operator")],  # admins are named by the owner key: sub
    ) as started:
        yield started


async def refused(client: httpx.AsyncClient, token: str) -> str:
    answer = await client.get("/sessions", headers=bearer(token))
    assert answer.status_code == 401, answer.text
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    message: str = answer.json()["messages"][0]["message"]
    return message


async def test_a_valid_token_names_the_owner(
    client: httpx.AsyncClient, issuer: FakeOIDCProvider
) -> None:
    alice = bearer(issuer.mint("alice"))
    client.headers.update(alice)
    offered = await request_offers(client, notebook_request())
    assert (await client.get(offered["meta"]["url"])).status_code == 200
    bob = await client.get(offered["meta"]["url"], headers=bearer(issuer.mint("bob")))
    assert bob.status_code == 404
    operator = await client.get(offered["meta"]["url"], headers=bearer(issuer.mint("operator")))
    assert operator.status_code == 200
    # Keys are fetched once and cached, not per request.
    fetched = issuer.jwks_requests
    for _ in range(5):
        assert (await client.get("/sessions", headers=alice)).status_code == 200
    assert issuer.jwks_requests == fetched


async def test_expired_future_and_foreign_tokens_are_refused(
    client: httpx.AsyncClient, issuer: FakeOIDCProvider
) -> None:
    now = datetime.now(UTC)
    expired = issuer.mint("alice", issued_at=now - timedelta(hours=2), lifetime=timedelta(hours=1))
    assert "expired" in await refused(client, expired)
    # Within the leeway (30 s), a token that just expired still works: clocks drift.
    just = issuer.mint(
        "alice", issued_at=now - timedelta(seconds=70), lifetime=timedelta(minutes=1)
    )
    assert (await client.get("/sessions", headers=bearer(just))).status_code == 200
    early = issuer.mint("alice", not_before=now + timedelta(minutes=10))
    assert "not valid yet" in await refused(client, early)
    assert "audience" in await refused(client, issuer.mint("alice", audience="another-service"))
    other_issuer = issuer.mint("alice", issuer="https://idp.example.org")
    assert "another issuer" in await refused(client, other_issuer)


async def test_tokens_signed_with_the_wrong_key_are_refused(
    client: httpx.AsyncClient, issuer: FakeOIDCProvider
) -> None:
    unknown = issuer.mint("alice", unpublished_key=True)
    assert "does not publish" in await refused(client, unknown)
    forged = issuer.mint("alice", unpublished_key=True, kid=issuer.current_kid)
    assert "not valid" in await refused(client, forged)
    # Unsigned and symmetric tokens are refused whatever they claim.
    claims = jwt.decode(issuer.mint("alice"), options={"verify_signature": False})
    unsigned = jwt.encode(claims, key="", algorithm="none")
    assert "none" in await refused(client, unsigned)
    hmac = jwt.encode(claims, key="a" * 32, algorithm="HS256", headers={"kid": issuer.current_kid})
    assert "HS256" in await refused(client, hmac)
    assert "not a JWT" in await refused(client, "opaque-token-of-someone")


async def test_rotated_keys_are_picked_up_and_withdrawn_ones_dropped(
    broker: BrokerClient, issuer: FakeOIDCProvider
) -> None:
    async with broker(
        user=None,
        auth="oidc",
        oidc_issuer=issuer.issuer,
        oidc_audience="execbroker",
        oidc_jwks_refresh=0,
    ) as client:
        old = issuer.mint("alice")
        assert (await client.get("/sessions", headers=bearer(old))).status_code == 200
        issuer.rotate_keys(keep_old=False)
        new = issuer.mint("alice")
        assert (await client.get("/sessions", headers=bearer(new))).status_code == 200
        # The old key was read again with the new one: it is gone now.
        assert "does not publish" in await refused(client, old)


async def test_an_unreachable_issuer_is_503_not_401(
    client: httpx.AsyncClient, issuer: FakeOIDCProvider
) -> None:
    issuer.idp_down = True
    answer = await client.get("/sessions", headers=bearer(issuer.mint("alice")))
    assert answer.status_code == 503
    assert answer.headers["retry-after"]
    assert "identity provider" in answer.json()["messages"][0]["message"]
    assert "HTTP 503" in answer.json()["messages"][0]["message"]
    issuer.idp_down = False
    # After a failure the next fetch waits out the back-off that Retry-After gave.
    await asyncio.sleep(float(answer.headers["retry-after"]))
    ok = await client.get("/sessions", headers=bearer(issuer.mint("alice")))
    assert ok.status_code == 200


async def test_the_owner_claim_is_configurable(
    broker: BrokerClient, issuer: FakeOIDCProvider
) -> None:
    async with broker(
        user=None,
        auth="oidc",
        oidc_issuer=issuer.issuer,
        oidc_audience="execbroker",
        oidc_owner_claim="email",
    ) as client:
        with_email = issuer.mint("alice", extra_claims={"email": "alice@example.org"})
        headers = bearer(with_email)
        created = await post(client, "/requests", notebook_request(), headers=headers)
        assert created.status_code == 303
        listed = await client.get("/offersets", headers=headers)
        assert created.json()["meta"]["uuid"] in listed.text
        without = issuer.mint("alice")
        assert "email" in await refused(client, without)
