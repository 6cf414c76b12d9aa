"""Offers a user can trust: they hold capacity, never overbook, and say what they cost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from execbroker.model.isotime import parse_duration
from tests.support.engine import FAST, ROLES, container, texts, until_ended, until_phase_reached
from tests.support.waiting import eventually
from tests.support.wire import example, phase_update, post

SMALL_POOL = {"capacity_cores": 8, "capacity_memory_gib": 32, "capacity_storage_gib": 100}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.split("/", maxsplit=1)[0].replace("Z", "+00:00"))


def _request(cores: int, *, window: str = "PT10M", duration: str = "PT30M") -> dict[str, Any]:
    document: dict[str, Any] = example("direct-request.json")
    document["compute"] = {"cores": {"min": cores, "max": cores}, "memory": {"min": 2, "max": 2}}
    start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document["schedule"] = {"requested": {"start": f"{start}/{window}", "duration": duration}}
    return document


async def _offers(client: httpx.AsyncClient, document: dict[str, Any]) -> dict[str, Any]:
    response = await post(client, "/requests", document)
    assert response.status_code == 303
    body: dict[str, Any] = response.json()
    return body


async def test_offers_hold_until_rejected(broker: Any) -> None:
    async with broker(**SMALL_POOL) as client:
        first = await _offers(client, _request(6))
        assert first["result"] == "YES"

        second = await _offers(client, _request(6))
        assert second["result"] == "NO"
        # The refusal first, then what would fit (tests/api/test_advice.py).
        message = second["meta"]["messages"][0]
        assert message["values"]["path"] == "/compute/cores/min"
        assert "with 6 cores free" in message["message"]
        assert "at most 2 free" in message["message"]

        for offer in first["offers"]:
            await post(client, offer["meta"]["url"], phase_update("REJECTED"))
        third = await _offers(client, _request(6))
        assert third["result"] == "YES"


async def test_accepted_sessions_hold_until_cancelled(broker: Any) -> None:
    async with broker(**SMALL_POOL) as client:
        first = await _offers(client, _request(6))
        url = first["offers"][0]["meta"]["url"]
        assert (await post(client, url, phase_update("ACCEPTED"))).status_code == 200
        assert (await _offers(client, _request(6)))["result"] == "NO"

        cancelled = await post(client, url, phase_update("CANCELLED"))
        assert cancelled.json()["phase"] == "CANCELLED"
        # Held until released: once the engine has released it, the cores are free again.
        await until_ended(client, url)
        assert (await _offers(client, _request(6)))["result"] == "YES"


async def test_a_cancelled_run_holds_its_cores_until_its_components_are_released(
    broker: Any,
) -> None:
    slow_release = {**FAST, "mock_release_seconds": dict.fromkeys(ROLES, 1.5)}
    async with broker(**SMALL_POOL, **slow_release) as client:
        # A run that outlasts the test, so that a loaded machine cannot see it end first.
        executable = container({"MOCK_RUN_SECONDS": "600"})["executable"]
        created = await post(client, "/direct", {**_request(6), "executable": executable})
        url = created.headers["location"]
        await until_phase_reached(client, url, "RUNNING")

        answer = (await post(client, url, phase_update("CANCELLED"))).json()
        # The user's decision is final at once; the compute shows what is happening to it.
        assert answer["phase"] == "CANCELLED"
        assert answer["meta"]["options"] == []
        releasing = (await client.get(url)).json()
        assert releasing["phase"] == "CANCELLED"
        assert releasing["compute"]["phase"] in ("RUNNING", "RELEASING")
        # The platform has not given the cores back yet: neither does the calendar.
        assert (await _offers(client, _request(6)))["result"] == "NO"

        done = await until_ended(client, url)
        assert done["phase"] == "CANCELLED"
        assert done["compute"]["phase"] == "CANCELLED"
        assert "Everything was released after the cancel" in texts(done)
        assert (await _offers(client, _request(6)))["result"] == "YES"


async def test_expired_offers_hold_nothing(broker: Any) -> None:
    # Long enough for the second request to meet the first offers still live on a slow machine.
    async with broker(offer_ttl=3, **SMALL_POOL) as client:
        first = await _offers(client, _request(6))
        assert first["result"] == "YES"
        assert (await _offers(client, _request(6)))["result"] == "NO"

        async def phases() -> set[str]:
            offer_set = (await client.get(first["meta"]["url"])).json()
            return {offer["phase"] for offer in offer_set["offers"]}

        await eventually(phases, lambda seen: seen == {"EXPIRED"}, what="the offers expired")
        assert (await _offers(client, _request(6)))["result"] == "YES"


async def test_a_later_start_is_offered_when_now_is_taken(broker: Any) -> None:
    async with broker(**SMALL_POOL) as client:
        taken = (await _offers(client, _request(6, window="PT5M", duration="PT1H")))["offers"]
        later = await _offers(client, _request(6, window="PT6H", duration="PT1H"))

    assert later["result"] == "YES"
    busy_until = max(_when(o["schedule"]["releasing"]["start"]) for o in taken)
    for offer in later["offers"]:
        assert _when(offer["schedule"]["preparing"]["start"]) >= busy_until


async def test_offers_carry_costs_from_the_rates(client: httpx.AsyncClient) -> None:
    body = await _offers(client, example("container-with-data-request.yaml"))
    offer = body["offers"][0]
    cores = offer["compute"]["cores"]["min"]
    memory = offer["compute"]["memory"]["min"]
    storage = sum(s["size"]["min"] for s in offer["storage"])
    hours = 0.5  # PT30M
    costs = {c["type"]: c for c in offer["costs"]}
    expected = hours * (cores * 0.05 + memory * 0.005 + storage * 0.0002)
    assert costs["urn:ivoa:calycopis:cost:monetary"]["max"] == pytest.approx(expected)
    energy = hours * (cores * 0.01 + memory * 0.0004)
    assert costs["urn:ivoa:calycopis:cost:energy"]["max"] == pytest.approx(energy)
    assert costs["urn:ivoa:calycopis:cost:carbon"]["max"] == pytest.approx(energy * 200)
    compute_costs = {c["type"]: c["max"] for c in offer["compute"]["costs"]}
    assert compute_costs["urn:ivoa:calycopis:cost:monetary"] == pytest.approx(
        hours * (cores * 0.05 + memory * 0.005)
    )
    assert offer["compute"]["metrics"][0]["type"] == (
        "urn:ivoa:calycopis:metric:compute-performance"
    )
    # Bigger offers cost more.
    by_cores = sorted(body["offers"], key=lambda o: o["compute"]["cores"]["min"])
    money = [next(c["max"] for c in o["costs"] if c["type"].endswith("monetary")) for o in by_cores]
    assert money[-1] > money[0]


async def test_cost_limits_exclude_offers_above_them(client: httpx.AsyncClient) -> None:
    document = example("notebook-request.yaml")  # 2-4 cores, 4-8 GiB, 2 h
    cheap = 2 * (2 * 0.05 + 4 * 0.005)
    document["costs"] = [
        {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/costs/simple-minmax-float-cost.yaml",
            "type": "urn:ivoa:calycopis:cost:monetary",
            "max": cheap + 0.001,
        }
    ]
    body = await _offers(client, document)
    assert body["result"] == "YES"
    assert {o["compute"]["cores"]["min"] for o in body["offers"]} == {2}

    document["costs"][0]["max"] = cheap / 2
    refused = await _offers(client, document)
    assert refused["result"] == "NO"
    problem = refused["meta"]["messages"][-1]
    assert problem["values"]["path"] == "/costs/0/max"
    assert "every offer costs more than the limit" in problem["message"]


async def test_extending_a_run_within_the_calendar(broker: Any) -> None:
    async with broker(**SMALL_POOL) as client:
        session = (await post(client, "/direct", _request(6))).json()
        options = {o["path"]: o for o in session["meta"]["options"]}
        extend = options["/schedule/available/duration"]
        assert extend["kind"] == "uri:integer-delta-option"
        assert extend["max"] == 7 * 24 * 3600 - 30 * 60  # up to the longest run offered

        update = {
            "kind": "uri:integer-delta-update",
            "path": "/schedule/available/duration",
            "delta": 600,
        }
        response = await post(client, session["meta"]["url"], update)
        assert response.status_code == 200
        extended = response.json()
        assert extended["schedule"]["available"]["duration"] == "PT40M"
        assert extended["compute"]["schedule"]["available"]["duration"] == "PT40M"
        shift = _when(extended["schedule"]["releasing"]["start"]) - _when(
            session["schedule"]["releasing"]["start"]
        )
        assert shift == timedelta(minutes=10)
        money = [
            next(c["max"] for c in s["costs"] if c["type"].endswith("monetary"))
            for s in (session, extended)
        ]
        assert money[1] == pytest.approx(money[0] * 40 / 30, abs=1e-6)  # quoted to 6 places

        # Read (so the room is worked out and kept), then another run booked straight after
        # this one leaves no room to extend it: the next read says so at once.
        room = (await client.get(session["meta"]["url"])).json()
        assert "/schedule/available/duration" in {o["path"] for o in room["meta"]["options"]}
        await post(client, "/direct", _request(6, window="PT12H"))
        blocked = (await client.get(session["meta"]["url"])).json()
        assert "/schedule/available/duration" not in {o["path"] for o in blocked["meta"]["options"]}
        refused = await post(client, session["meta"]["url"], update)
        assert refused.status_code == 409
        assert "at most 0 seconds" in refused.json()["messages"][0]["message"]


async def test_extension_updates_that_cannot_apply(client: httpx.AsyncClient) -> None:
    offer = (await _offers(client, _request(2)))["offers"][0]
    update = {"kind": "uri:integer-delta-update", "path": "/schedule/available/duration"}
    offered = await post(client, offer["meta"]["url"], {**update, "delta": 60})
    assert offered.status_code == 409
    assert "only an accepted session" in offered.json()["messages"][0]["message"]
    await post(client, offer["meta"]["url"], phase_update("ACCEPTED"))
    for bad, words in (
        ({**update, "delta": -60}, "must be positive"),
        ({**update, "delta": 1, "units": "fortnights"}, "fortnights"),
        ({**update, "kind": "uri:enum-value-update", "value": "x"}, "integer-delta-update"),
    ):
        response = await post(client, offer["meta"]["url"], bad)
        assert response.status_code == 422, bad
        assert words in response.json()["messages"][0]["message"]
    minutes = await post(client, offer["meta"]["url"], {**update, "delta": 5, "units": "minutes"})
    assert minutes.json()["schedule"]["available"]["duration"] == "PT35M"


def _accepted_peak(sessions: list[dict[str, Any]]) -> int:
    """The most cores the accepted sessions book at any instant."""
    events: list[tuple[datetime, int]] = []
    for session in sessions:
        schedule = session["schedule"]
        start = _when(schedule["preparing"]["start"])
        end = _when(schedule["releasing"]["start"]) + parse_duration(
            schedule["releasing"]["duration"]
        )
        cores = session["compute"]["cores"]["min"]
        events += [(start, cores), (end, -cores)]
    level = peak = 0
    for _, change in sorted(events):
        level += change
        peak = max(peak, level)
    return peak


async def test_concurrent_requests_and_accepts_never_overbook(client: httpx.AsyncClient) -> None:
    # 50 requests at once for 32 of the pool's 64 cores, in a 5-minute window: few fit.
    documents = [_request(32, window="PT5M", duration="PT1H") for _ in range(50)]
    answers = await asyncio.gather(*(post(client, "/requests", d) for d in documents))
    assert all(a.status_code == 303 for a in answers)
    offer_sets = [a.json() for a in answers]
    granted = [s for s in offer_sets if s["result"] == "YES"]
    assert 1 <= len(granted) <= 2
    for refused in (s for s in offer_sets if s["result"] == "NO"):
        assert "32 cores free" in refused["meta"]["messages"][0]["message"]

    offers = [o for s in granted for o in s["offers"]]
    results = await asyncio.gather(
        *(post(client, o["meta"]["url"], phase_update("ACCEPTED")) for o in offers)
    )
    assert sorted({r.status_code for r in results}) <= [200, 409]
    for refusal in (r for r in results if r.status_code == 409):
        assert refusal.json()["error"] == "conflict"
        assert refusal.json()["messages"][0]["message"]
    accepted = [r.json() for r in results if r.status_code == 200]
    assert len(accepted) == len(granted), "one accept wins per offer set"
    assert _accepted_peak(accepted) <= 64


async def test_extension_deltas_at_the_int64_bounds_are_refused_with_a_message(
    client: httpx.AsyncClient,
) -> None:
    offer = (await _offers(client, _request(2)))["offers"][0]
    await post(client, offer["meta"]["url"], phase_update("ACCEPTED"))
    update = {"kind": "uri:integer-delta-update", "path": "/schedule/available/duration"}
    for delta, units, status, words in (
        (2**63 - 1, None, 409, f"{2**63 - 1} seconds were asked for"),
        (2**63 - 1, "hours", 409, f"{(2**63 - 1) * 3600} seconds were asked for"),
        (-(2**63), None, 422, "must be positive"),
        (-(2**63), "hours", 422, "must be positive"),
    ):
        body = {**update, "delta": delta} | ({"units": units} if units else {})
        response = await post(client, offer["meta"]["url"], body)
        assert response.status_code == status, response.text
        assert words in response.json()["messages"][0]["message"]
    unchanged = (await client.get(offer["meta"]["url"])).json()
    assert unchanged["schedule"]["available"]["duration"] == "PT30M"
