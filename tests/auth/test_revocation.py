"""Revocation fails closed: a tokens file that cannot be read whole lets nobody in, and a
token revoked (or a JWT that expires) while its owner waits ends the wait."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from execbroker.fakes.oidc import FakeOIDCProvider
from tests.conftest import BrokerClient
from tests.support.inprocess import until_waiting
from tests.support.users import TOKENS, auth, write_tokens_file
from tests.support.wire import notebook_request, request_offers

BROKEN_FILES = {
    "emptied": "",
    "broken YAML": "tokens:\n  alice-token-6f1c9e0b2a7d: alice\n  broken: [unclosed\n",
    "a list": "- alice-token-6f1c9e0b2a7d\n",
    "no mapping of tokens": "tokens: [alice-token-6f1c9e0b2a7d]\n",
    "one token too short": "tokens:\n  alice-token-6f1c9e0b2a7d: alice\n  8chars!!: mallory\n",
    "not UTF-8": "tokens:\n  alice-token-6f1c9e0b2a7d: alice\n  \udcff\udcfe: bob\n",
}


@pytest.mark.parametrize("content", BROKEN_FILES.values(), ids=BROKEN_FILES.keys())
async def test_a_tokens_file_that_cannot_be_read_whole_lets_no_token_in(
    broker: BrokerClient, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    path = tmp_path / "test-tokens.yaml"
    async with broker() as client:
        for user in TOKENS:
            assert (await client.get("/sessions", headers=auth(user))).status_code == 200
        # Bob is being revoked, and the edit goes wrong: nobody stays in, bob included.
        path.write_bytes(content.encode("utf-8", "surrogateescape"))
        with caplog.at_level(logging.ERROR, logger="execbroker.auth.tokens"):
            for user in TOKENS:
                refused = await client.get("/sessions", headers=auth(user))
                assert refused.status_code == 401, user
                assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, "one loud line per edit, not one per request"
        line = errors[0].getMessage()
        assert str(path) in line
        assert "no token is valid until it is fixed" in line
        assert "alice-token" not in line, "the log never quotes the file's tokens"
        # Fixed: everyone is back at once, without a restart.
        write_tokens_file(path)
        for user in TOKENS:
            assert (await client.get("/sessions", headers=auth(user))).status_code == 200


async def test_a_deliberately_empty_mapping_is_valid_and_lets_nobody_in(
    broker: BrokerClient, tmp_path: Path
) -> None:
    async with broker() as client:
        (tmp_path / "test-tokens.yaml").write_text("tokens: {}\n")
        assert (await client.get("/sessions")).status_code == 401


async def test_a_revoked_token_ends_its_long_poll_with_401(
    broker: BrokerClient, tmp_path: Path
) -> None:
    async with broker(credential_recheck=0.2) as client:
        offered = await request_offers(client, notebook_request())
        offer = offered["offers"][0]["meta"]["url"]
        started = time.monotonic()
        poll = asyncio.ensure_future(client.get(offer, params={"wait": 30}))
        await until_waiting(client, 1)
        assert not poll.done()
        path = tmp_path / "test-tokens.yaml"
        path.write_text(path.read_text().replace(TOKENS["alice"], "alice-new-token-0123456789"))
        answer = await asyncio.wait_for(poll, 5)
        assert answer.status_code == 401
        assert time.monotonic() - started < 3, "ended by the revocation, not by ?wait="


async def test_an_oidc_token_that_expires_ends_its_long_poll(
    broker: BrokerClient, issuer: FakeOIDCProvider
) -> None:
    async with broker(
        user=None,
        auth="oidc",
        oidc_issuer=issuer.issuer,
        oidc_audience="execbroker",
        oidc_leeway=0,
        credential_recheck=0.2,
    ) as client:
        lasting = {"Authorization": f"Bearer {issuer.mint('alice')}"}
        offered = (await client.post("/requests", json=notebook_request(), headers=lasting)).json()
        offer = offered["offers"][0]["meta"]["url"]
        brief = {"Authorization": f"Bearer {issuer.mint('alice', lifetime=timedelta(seconds=2))}"}
        started = time.monotonic()
        answer = await client.get(offer, params={"wait": 30}, headers=brief)
        assert answer.status_code == 401
        assert "expired" in answer.json()["messages"][0]["message"].lower()
        assert time.monotonic() - started < 5


async def test_an_oidc_token_accepted_before_is_refused_once_it_expires(
    broker: BrokerClient, issuer: FakeOIDCProvider
) -> None:
    async with broker(
        user=None,
        auth="oidc",
        oidc_issuer=issuer.issuer,
        oidc_audience="execbroker",
        oidc_leeway=0,
    ) as client:
        token = issuer.mint("alice", lifetime=timedelta(seconds=2))
        brief = {"Authorization": f"Bearer {token}"}
        for _ in range(3):  # checked once, then remembered
            assert (await client.get("/sessions", headers=brief)).status_code == 200
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)
        refused = await client.get("/sessions", headers=brief)
        assert refused.status_code == 401
        assert "expired" in refused.json()["messages"][0]["message"]


async def test_a_tokens_file_moved_over_by_one_of_the_same_size_and_time_takes_effect(
    broker: BrokerClient, tmp_path: Path
) -> None:
    path = tmp_path / "test-tokens.yaml"
    async with broker() as client:
        assert (await client.get("/sessions", headers=auth("alice"))).status_code == 200
        # Alice's token replaced by another as long, in a new file with the old one's
        # modification time, moved over it: only the inode tells the files apart.
        old = path.stat()
        new = tmp_path / "test-tokens.yaml.new"
        new.write_text(path.read_text().replace(TOKENS["alice"], "r" * len(TOKENS["alice"])))
        os.utime(new, ns=(old.st_atime_ns, old.st_mtime_ns))
        assert new.stat().st_size == old.st_size
        new.replace(path)
        assert (await client.get("/sessions", headers=auth("alice"))).status_code == 401
        assert (await client.get("/sessions", headers=auth("bob"))).status_code == 200
