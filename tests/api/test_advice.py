"""Waits and refusals that explain themselves, in numbers, through the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.engine import container
from tests.support.waiting import eventually
from tests.support.wire import example, phase_update, post, request_offers

SMALL_POOL = {"capacity_cores": 8, "capacity_memory_gib": 32, "capacity_storage_gib": 100}


def _request(cores: int, *, start: str | None = None, window: str = "PT10M") -> dict[str, Any]:
    document: dict[str, Any] = example("direct-request.json")
    document["compute"] = {"cores": {"min": cores, "max": cores}, "memory": {"min": 2, "max": 2}}
    # Runs that last: nothing ends early and moves the waiting session (issue 19, part 1).
    document["executable"]["environment"] = {"MOCK_RUN_SECONDS": "600"}
    start = start or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document["schedule"] = {"requested": {"start": f"{start}/{window}", "duration": "PT30M"}}
    return document


def _advice(offer_set: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        m["values"]["change"]: m["values"]
        for m in offer_set["meta"]["messages"]
        if "change" in m.get("values", {})
    }


async def _accept_first(client: httpx.AsyncClient, document: dict[str, Any]) -> dict[str, Any]:
    offer_set = await request_offers(client, document)
    assert offer_set["result"] == "YES", offer_set
    url = offer_set["offers"][0]["meta"]["url"]
    accepted = await post(client, url, phase_update("ACCEPTED"))
    assert accepted.status_code == 200
    body: dict[str, Any] = accepted.json()
    return body


async def test_a_no_says_what_would_fit_and_each_change_gets_offers(broker: Any) -> None:
    async with broker(**SMALL_POOL) as client:
        await _accept_first(client, _request(6))

        refused = await request_offers(client, _request(6))

        assert refused["result"] == "NO"
        advice = _advice(refused)
        assert advice["cores"]["cores"] == "2", "8 cores, 6 of them booked"
        assert advice["cores"]["instead"] == "6"
        assert "duration" not in advice, "every start in the interval meets the booked run"
        later = advice["start"]["start"]
        assert later > refused["meta"]["messages"][0]["values"]["end"]
        fewer = await request_offers(client, _request(2))
        assert fewer["result"] == "YES"
        assert fewer["offers"][0]["compute"]["cores"]["min"] == 2
        from_then = await request_offers(client, _request(6, start=later))
        assert from_then["result"] == "YES"
        assert from_then["offers"][0]["schedule"]["available"]["start"].startswith(later)


async def test_a_waiting_session_names_what_it_waits_for_and_who_holds_it(broker: Any) -> None:
    async with broker(**SMALL_POOL) as client:
        await _accept_first(client, _request(6))

        waiting = await _accept_first(client, _request(6, window="PT2H"))

        url = waiting["meta"]["url"]
        session = await eventually(
            lambda: client.get(url),
            until=lambda response: response.json()["phase"] == "WAITING",
            what="the session waits",
        )
        (why,) = [m for m in session.json()["meta"]["messages"] if "binding" in m.get("values", {})]
        assert why["values"]["binding"] == "cores"
        assert why["values"]["holders"] == "1", "the session accepted before it"
        assert (why["values"]["wanted"], why["values"]["free"]) == ("6", "2")
        start = session.json()["schedule"]["available"]["start"]
        assert why["values"]["start"] == start.split("/")[0]
        assert f"Waits for its start at {why['values']['start']}" in why["message"]


async def test_the_third_direct_run_on_two_cores_says_it_waits_for_cores(broker: Any) -> None:
    """The issue's first scenario, as planned: two 1-core runs take the 2-core pool for their
    default hour, and the third says so, in numbers, from the moment it is made.
    """
    async with broker(capacity_cores=2) as client:
        document = container({"MOCK_RUN_SECONDS": "60"}, data=False)
        document["compute"] = {"cores": {"min": 1, "max": 1}}
        document["schedule"] = {"requested": {}}
        for _ in range(2):
            assert (await post(client, "/direct", document)).status_code == 303

        third = await post(client, "/direct", document)

        assert third.status_code == 303
        (why,) = [m for m in third.json()["meta"]["messages"] if "binding" in m.get("values", {})]
        values = why["values"]
        assert (values["binding"], values["wanted"], values["free"]) == ("cores", "1", "0")
        assert (values["held"], values["capacity"], values["holders"]) == ("2", "2", "2")
        assert values["start"] == third.json()["schedule"]["available"]["start"].split("/")[0]
