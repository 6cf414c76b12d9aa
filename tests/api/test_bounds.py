"""What one user, or one anonymous address, may cost: waiters, stored records, anonymous
requests; and the retention job that deletes what ended long ago."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from typing import Any

import httpx

from tests.conftest import BrokerClient
from tests.support.inprocess import until_waiting
from tests.support.users import auth
from tests.support.waiting import eventually
from tests.support.wire import example, notebook_request, phase_update, post, request_offers

BOGUS = {"executable": {"kind": "bogus"}}


async def test_waiters_beyond_a_users_cap_get_429_and_others_are_not_held_up(
    broker: BrokerClient,
) -> None:
    async with broker(max_waiters_per_user=3) as client:
        offers = (await request_offers(client, notebook_request()))["offers"]
        url = offers[0]["meta"]["url"]
        held = [asyncio.ensure_future(client.get(url, params={"wait": 30})) for _ in range(3)]
        await until_waiting(client, 3)
        assert not any(poll.done() for poll in held)

        refused = await client.get(url, params={"wait": 30})
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_waiters"
        assert "3 long-polls and event streams" in refused.json()["messages"][0]["message"]
        assert int(refused.headers["retry-after"]) > 0
        # Reads without ?wait= are not waiters; other users have their own allowance.
        assert (await client.get(url)).status_code == 200
        bobs = (await post(client, "/requests", notebook_request(), headers=auth("bob"))).json()
        started = time.monotonic()
        bob_poll = await client.get(
            bobs["offers"][0]["meta"]["url"], params={"wait": 0.5}, headers=auth("bob")
        )
        assert bob_poll.status_code == 200
        assert time.monotonic() - started < 3

        # One change wakes every waiter at once, and frees their places.
        await post(client, url, phase_update("REJECTED"))
        answers = await asyncio.wait_for(asyncio.gather(*held), 5)
        assert [a.json()["phase"] for a in answers] == ["REJECTED"] * 3
        again = await client.get(offers[1]["meta"]["url"], params={"wait": 0.2})
        assert again.status_code == 200


async def test_a_user_storing_too_many_records_gets_429(
    broker: BrokerClient,
) -> None:
    async with broker(quota_stored_records=3) as client:
        for _ in range(3):
            refused = await post(client, "/requests", BOGUS)
            assert refused.status_code == 303
            assert refused.json()["result"] == "NO"
        over = await post(client, "/requests", BOGUS)
        assert over.status_code == 429
        assert over.json()["error"] == "quota_exceeded"
        assert "the most one user may store (3)" in over.json()["messages"][0]["message"]
        direct = await post(client, "/direct", example("direct-request.json"))
        assert direct.status_code == 429
        # Bob's allowance is his own.
        bobs = await post(client, "/requests", BOGUS, headers=auth("bob"))
        assert bobs.status_code == 303


async def _metric(client: httpx.AsyncClient, record: str) -> float:
    text = (await client.get("/metrics")).text
    found = re.search(
        rf'^execbroker_retention_deleted_total{{record="{record}"}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def _ended(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    for _ in range(20):
        session: dict[str, Any] = (await client.get(url, params={"wait": 2})).json()
        if session["phase"] in ("CANCELLED", "COMPLETED", "FAILED"):
            return session
    raise AssertionError(f"{url} did not end")


async def test_retention_deletes_old_ended_records_and_keeps_live_ones(
    broker: BrokerClient,
) -> None:
    async with broker(
        retention=timedelta(seconds=3), retention_interval=0.2, quota_stored_records=4
    ) as client:
        deleted_sets = await _metric(client, "offer_set")
        # The slow one first (it ends once released), so that all four are younger than
        # the retention when the quota is checked below.
        direct = (await post(client, "/direct", example("direct-request.json"))).json()
        await post(client, direct["meta"]["url"], phase_update("CANCELLED"))
        await _ended(client, direct["meta"]["url"])
        refused = (await post(client, "/requests", BOGUS)).json()
        rejected = await request_offers(client, notebook_request())
        for offer in rejected["offers"]:
            await post(client, offer["meta"]["url"], phase_update("REJECTED"))
        live = await request_offers(client, notebook_request(start="2030-01-01T10:00:00Z/PT3H"))
        accepted = live["offers"][0]["meta"]["url"]
        assert (await post(client, accepted, phase_update("ACCEPTED"))).status_code == 200
        # Four stored: the quota is full until retention deletes the ended ones.
        assert (await post(client, "/requests", BOGUS)).status_code == 429

        gone = [refused["meta"]["url"], rejected["meta"]["url"], direct["meta"]["url"]]
        gone += [o["meta"]["url"] for o in rejected["offers"]]

        async def statuses() -> dict[str, int]:
            return {url: (await client.get(url)).status_code for url in gone}

        await eventually(
            statuses,
            lambda seen: set(seen.values()) == {404},
            what="retention deleted the ended sessions and offer sets",
            interval=0.2,
        )
        # The accepted session, its offer set and its rejected siblings stay: one is live.
        assert (await client.get(accepted)).json()["phase"] == "WAITING"
        assert len((await client.get(live["meta"]["url"])).json()["offers"]) == len(live["offers"])
        assert await _metric(client, "offer_set") >= deleted_sets + 2
        # The quota counts what is stored now.
        assert (await post(client, "/requests", BOGUS)).status_code == 303


async def test_anonymous_requests_are_rate_limited_per_address(broker: BrokerClient) -> None:
    async with broker(user=None, anonymous_rate=0.01, anonymous_burst=4) as client:
        for path in ("/healthz", "/metrics", "/openapi.json", "/sessions"):
            assert (await client.get(path)).status_code in (200, 401)
        limited = await client.get("/healthz")
        assert limited.status_code == 429
        assert limited.json()["error"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert (await client.get("/metrics")).status_code == 429
        assert (await client.get("/sessions")).status_code == 429  # would be a 401
        # A wrong token's 401 spends from the same bucket, so it is refused too.
        wrong = await client.get("/sessions", headers={"Authorization": "Bearer x" * 20})
        assert wrong.status_code == 429
        # A user with valid credentials is never held up by the anonymous allowance.
        assert (await client.get("/sessions", headers=auth("alice"))).status_code == 200
        # Another address has its own bucket.
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=client._transport.app, client=("10.1.2.3", 1)),
            base_url=client.base_url,
        )
        async with other:
            assert (await other.get("/healthz")).status_code == 200


async def test_metrics_can_require_a_token(broker: BrokerClient) -> None:
    async with broker(user=None, metrics_token_required=True) as client:
        anonymous = await client.get("/metrics")
        assert anonymous.status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 20})
        assert wrong.status_code == 401
        scraped = await client.get("/metrics", headers=auth("bob"))
        assert scraped.status_code == 200
        assert "execbroker_sessions" in scraped.text
