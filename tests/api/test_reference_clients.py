"""What clients of the reference broker read: the offer set's kind, session-level costs and
metrics, and metrics on the reference's benchmark scale (issue 15)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from execbroker.model.wire import OfferSetResponse
from tests.support.wire import decode, example, phase_update, post

OFFERSET_KIND = (
    "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/offerset/"
    "execution-offerset.yaml"
)
METRIC_KIND = (
    "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/metrics/"
    "simple-minmax-float-metric.yaml"
)
PERFORMANCE = "urn:ivoa:calycopis:metric:compute-performance"
IO = "urn:ivoa:calycopis:metric:io-throughput"


def _by_type(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["type"]: item for item in items}


def _with_minimum(metric: str, minimum: float) -> dict[str, Any]:
    document: dict[str, Any] = example("notebook-request.yaml")
    document["metrics"] = [{"kind": METRIC_KIND, "type": metric, "min": minimum}]
    return document


@pytest.mark.parametrize("media", ["application/json", "application/yaml", "application/xml"])
async def test_offer_sets_carry_the_reference_kind(client: httpx.AsyncClient, media: str) -> None:
    created = await post(client, "/requests", example("notebook-request.yaml"))
    url = created.json()["meta"]["url"]
    read = decode(await client.get(url, headers={"Accept": media}))
    assert read["kind"] == OFFERSET_KIND
    listed = (await client.get("/offersets")).json()
    assert {entry["kind"] for entry in listed["offersets"]} == {OFFERSET_KIND}


def test_offer_sets_written_without_a_kind_are_still_read() -> None:
    older = {"result": "NO", "meta": {"uuid": "4f1c53a2-0d2c-4a3b-9c0e-7a3c4d5e6f70"}}
    assert OfferSetResponse.model_validate(older).kind is None


async def test_offers_carry_costs_and_metrics_at_the_session_level(
    client: httpx.AsyncClient,
) -> None:
    body = (await post(client, "/requests", example("container-with-data-request.yaml"))).json()
    assert body["result"] == "YES", body["meta"]["messages"]
    for offer in body["offers"]:
        # The compute's metrics, on the reference's scale: a range over core types.
        assert offer["metrics"] == offer["compute"]["metrics"]
        metrics = _by_type(offer["metrics"])
        assert (metrics[PERFORMANCE]["min"], metrics[PERFORMANCE]["max"]) == (150.0, 200.0)
        assert metrics[IO]["min"] < metrics[IO]["max"]
        assert "MB/s" in metrics[IO]["description"]
        # The session costs what its components cost, type by type.
        parts = [offer["compute"]["costs"], *(s["costs"] for s in offer["storage"])]
        session = _by_type(offer["costs"])
        assert set(session) == {c["type"] for c in offer["compute"]["costs"]}
        for cost_type, cost in session.items():
            total = sum(_by_type(costs)[cost_type]["max"] for costs in parts)
            assert cost["max"] == pytest.approx(total, abs=1e-6)
            assert cost["min"] == cost["max"]
        storage_money = _by_type(offer["storage"][0]["costs"])["urn:ivoa:calycopis:cost:monetary"]
        assert storage_money["max"] > 0


async def test_a_performance_minimum_on_the_reference_scale_is_met(
    client: httpx.AsyncClient,
) -> None:
    body = (await post(client, "/requests", _with_minimum(PERFORMANCE, 50))).json()
    assert body["result"] == "YES", body["meta"]["messages"]


@pytest.mark.parametrize(
    ("metric", "minimum", "promised"), [(PERFORMANCE, 180, 150.0), (IO, 1000, 100.0)]
)
async def test_a_minimum_only_some_cores_reach_is_refused_with_the_figure(
    client: httpx.AsyncClient, metric: str, minimum: float, promised: float
) -> None:
    body = (await post(client, "/requests", _with_minimum(metric, minimum))).json()
    assert body["result"] == "NO"
    message = body["meta"]["messages"][-1]
    assert message["values"]["path"] == "/metrics/0/min"
    assert f"the platform's {metric} is {promised}, below the minimum" in message["message"]


async def test_an_extension_costs_the_longer_run_in_every_component(
    client: httpx.AsyncClient,
) -> None:
    document = example("container-with-data-request.yaml")
    offers = (await post(client, "/requests", document)).json()["offers"]
    url = offers[0]["meta"]["url"]
    accepted = (await post(client, url, phase_update("ACCEPTED"))).json()
    before = _by_type(accepted["costs"])["urn:ivoa:calycopis:cost:monetary"]["max"]
    extend = {"kind": "uri:integer-delta-update", "path": "/schedule/available/duration"}
    extended = await post(client, url, {**extend, "delta": 1800})
    assert extended.status_code == 200, extended.text
    after = extended.json()
    money = "urn:ivoa:calycopis:cost:monetary"
    # PT30M became PT1H: twice the cost, in the session and in each of its components.
    assert _by_type(after["costs"])[money]["max"] == pytest.approx(2 * before, rel=1e-4)
    parts = [after["compute"]["costs"], *(s["costs"] for s in after["storage"])]
    total = sum(_by_type(costs)[money]["max"] for costs in parts)
    assert _by_type(after["costs"])[money]["max"] == pytest.approx(total, abs=1e-6)
