"""Offers nobody accepts become EXPIRED on time, by a timer, and then cannot be accepted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.waiting import eventually
from tests.support.wire import notebook_request, phase_update, post, request_offers


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def until_phase(client: httpx.AsyncClient, url: str, phase: str) -> None:
    """Until the offer at ``url`` says ``phase``, read with the server's long-poll (which
    answers as soon as the offer leaves the phase it is in)."""

    async def read() -> str:
        found: str = (await client.get(url, params={"wait": 1})).json()["phase"]
        return found

    await eventually(read, lambda found: found == phase, what=f"{url} {phase}")


async def test_unaccepted_offers_expire_by_timer(broker: Any) -> None:
    async with broker(offer_ttl=0.5, expiry_interval=5) as client:
        offer_set = await request_offers(client, notebook_request())
        # Nobody looks for a while; the timer does its work regardless.
        await asyncio.sleep(1.5)
        reread = (await client.get(offer_set["meta"]["url"])).json()

    for offer in reread["offers"]:
        assert offer["phase"] == "EXPIRED"
        assert offer["compute"]["phase"] == "CANCELLED"
        assert offer["meta"]["options"] == []
        note = offer["meta"]["messages"][-1]
        assert note["template"] == "Offer expired at {expires} without being accepted"
        # Marked when it fell due, not when someone read it a second later.
        lateness = _when(note["time"]) - _when(offer["expires"])
        assert lateness.total_seconds() < 0.5, lateness


async def test_an_expired_offer_cannot_be_accepted(broker: Any) -> None:
    async with broker(offer_ttl=0.3) as client:
        offer = (await request_offers(client, notebook_request()))["offers"][0]
        await until_phase(client, offer["meta"]["url"], "EXPIRED")
        response = await post(client, offer["meta"]["url"], phase_update("ACCEPTED"))
        assert response.status_code == 409
        assert (
            "EXPIRED" in response.json()["messages"][0]["message"]
            or "expired" in (response.json()["messages"][0]["message"])
        )
        assert (await client.get(offer["meta"]["url"])).json()["phase"] == "EXPIRED"


async def test_accepted_offers_do_not_expire(broker: Any) -> None:
    # Long enough to accept in on a slow, loaded machine; the test then waits past it.
    async with broker(offer_ttl=3) as client:
        offers = (await request_offers(client, notebook_request()))["offers"]
        accepted = await post(client, offers[0]["meta"]["url"], phase_update("ACCEPTED"))
        assert accepted.status_code == 200
        due = _when(offers[0]["expires"]) - datetime.now(UTC)
        await asyncio.sleep(due.total_seconds() + 0.5)
        # The engine has taken it on: whatever it is doing, it has not expired.
        phase = (await client.get(offers[0]["meta"]["url"])).json()["phase"]
        assert phase in ("ACCEPTED", "WAITING", "PREPARING", "AVAILABLE", "RUNNING")
