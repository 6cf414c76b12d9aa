"""The tokens file made on first start, quotas per user, and what every answer carries."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import yaml
from asgi_lifespan import LifespanManager

from execbroker.config import Settings
from execbroker.localtoken import local_token
from execbroker.main import create_app
from execbroker.web.docs import DOCS_POLICY
from tests.conftest import BrokerClient
from tests.support.live import LiveBroker
from tests.support.users import auth
from tests.support.wire import example, notebook_request, phase_update, post, request_offers


async def test_first_start_creates_a_private_tokens_file_that_works(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh")
    path = tmp_path / "fresh" / "tokens.yaml"
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = local_token(path, user="local")
        assert token is not None
        assert len(token) >= 40
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as client:
            headers = {"Authorization": f"Bearer {token}"}
            created = await post(client, "/requests", notebook_request(), headers=headers)
            assert created.status_code == 303
            assert (await client.get("/sessions", headers=headers)).status_code == 200

            # A token added to the file works at once; one removed stops working.
            newcomer = "carol-token-1c2d3e4f5a6b"
            path.write_text(yaml.safe_dump({"tokens": {newcomer: "carol"}}))
            carol = {"Authorization": f"Bearer {newcomer}"}
            assert (await client.get("/sessions", headers=carol)).status_code == 200
            assert (await client.get("/sessions", headers=headers)).status_code == 401
            # carol does not see what local made.
            listed = (await client.get("/offersets", headers=carol)).json()
            assert listed["offersets"] == []

    # A second start keeps the same token.
    async with LifespanManager(create_app(Settings(data_dir=tmp_path / "fresh"))):
        assert local_token(path, user="carol") == "carol-token-1c2d3e4f5a6b"


async def test_live_offer_quota_trims_then_refuses_with_429(broker: BrokerClient) -> None:
    async with broker(quota_live_offers=4) as client:
        first = await request_offers(client, notebook_request())
        assert len(first["offers"]) == 3
        second = await request_offers(client, notebook_request())
        assert len(second["offers"]) == 1  # room for one more
        refused = await post(client, "/requests", notebook_request())
        assert refused.status_code == 429
        message = refused.json()["messages"][0]["message"]
        assert "alice already holds 4 unexpired offers" in message
        assert refused.json()["error"] == "quota_exceeded"
        # Quotas are per user.
        bobs = await post(client, "/requests", notebook_request(), headers=auth("bob"))
        assert bobs.status_code == 303
        assert len(bobs.json()["offers"]) == 3
        # Rejecting offers frees room.
        for offer in first["offers"]:
            await post(client, offer["meta"]["url"], phase_update("REJECTED"))
        assert (await post(client, "/requests", notebook_request())).status_code == 303


async def test_active_session_quota_covers_direct_runs_and_accepts(
    broker: BrokerClient,
) -> None:
    async with broker(quota_active_sessions=1) as client:
        offered = await request_offers(client, notebook_request())
        direct = await post(client, "/direct", example("direct-request.json"))
        assert direct.status_code == 303, direct.text
        again = await post(client, "/direct", example("direct-request.json"))
        assert again.status_code == 429
        assert "alice already has 1 active sessions" in again.json()["messages"][0]["message"]
        accepted = await post(client, offered["offers"][0]["meta"]["url"], phase_update("ACCEPTED"))
        assert accepted.status_code == 429
        assert (await client.get(offered["offers"][0]["meta"]["url"])).json()["phase"] == "OFFERED"
        bobs = await post(client, "/direct", example("direct-request.json"), headers=auth("bob"))
        assert bobs.status_code == 303
        # Once alice's run is cancelled and released, she may accept again.
        await post(client, direct.headers["location"], phase_update("CANCELLED"))
        ended = await client.get(f"{direct.headers['location']}?wait=30&phase=RELEASING")
        for _ in range(10):
            if ended.json()["phase"] == "CANCELLED":
                break
            ended = await client.get(
                f"{direct.headers['location']}?wait=30&phase={ended.json()['phase']}"
            )
        assert ended.json()["phase"] == "CANCELLED"
        accepted = await post(client, offered["offers"][0]["meta"]["url"], phase_update("ACCEPTED"))
        assert accepted.status_code == 200, accepted.text


async def test_answers_carry_security_headers(client: httpx.AsyncClient) -> None:
    answer = await client.get("/sessions")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["referrer-policy"] == "no-referrer"
    docs = await client.get("/docs")
    assert docs.headers["x-frame-options"] == "DENY"
    # The docs page loads its scripts from the broker only (its own policy, web/docs.py).
    assert docs.headers["content-security-policy"] == DOCS_POLICY


async def test_bodies_over_the_configured_limit_are_413(broker: BrokerClient) -> None:
    async with broker(max_body_bytes=4096) as client:
        document = notebook_request()
        document["name"] = "x" * 5000
        too_big = await post(client, "/requests", document)
        assert too_big.status_code == 413
        assert "4096" in too_big.json()["messages"][0]["message"]
        assert (await client.get("/offersets")).json()["offersets"] == []
        # Without a token, the body is never read: 401 first.
        anonymous = await post(client, "/requests", document, headers={"Authorization": ""})
        assert anonymous.status_code == 401


def test_the_cli_prints_the_local_token_that_make_run_created(tmp_path: Path) -> None:
    env = {**os.environ, "EXECBROKER_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "execbroker", "token"]
    missing = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode == 1
    assert "start the broker once" in missing.stderr
    with LiveBroker(data_dir=tmp_path) as live:
        printed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        token = printed.stdout.strip()
        answer = httpx.get(
            f"{live.url}/sessions", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert answer.status_code == 200
