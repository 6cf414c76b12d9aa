"""Locations naming a denied address are refused when planned, on every platform, with a
message naming the field; the allow-list opens them."""

from __future__ import annotations

from typing import Any

import pytest

from execbroker.model import kinds
from tests.conftest import BrokerClient
from tests.support.wire import example, post


def _with_data(location: str) -> dict[str, Any]:
    return {
        "executable": example("direct-request.json")["executable"],
        "data": [{"kind": kinds.DATA_SIMPLE, "meta": {"name": "input"}, "location": location}],
    }


def _texts(body: dict[str, Any]) -> str:
    messages = body.get("messages") or body.get("meta", {}).get("messages") or []
    return " | ".join(m["message"] for m in messages)


@pytest.mark.parametrize(
    ("location", "said"),
    [
        ("http://127.0.0.1:8080/ui/token-hint", "127.0.0.1 is a loopback address"),
        ("http://localhost:8080/metrics", "localhost is a loopback name"),
        ("http://2130706433/secret", "2130706433 is a loopback address"),
        ("http://0x7f.1/secret", "0x7f.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/secret", "::ffff:127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("https://10.20.30.40/internal", "10.20.30.40 is a private address"),
    ],
)
async def test_a_denied_location_gets_no_offers_and_a_message(
    broker: BrokerClient, location: str, said: str
) -> None:
    async with broker() as client:
        body = (await post(client, "/requests", _with_data(location))).json()
        direct = await post(client, "/direct", _with_data(location))
    assert body["result"] == "NO"
    assert f"/data/0/location: {said}" in _texts(body)
    assert "which the broker does not fetch from" in _texts(body)
    assert direct.status_code == 400
    assert said in direct.text


@pytest.mark.parametrize(
    ("kind", "field"),
    [(kinds.DATA_S3, "endpoint")],
)
async def test_other_fetched_fields_are_checked_too(
    broker: BrokerClient, kind: str, field: str
) -> None:
    document = _with_data("https://example.org/x")
    document["data"][0] = {
        "kind": kind,
        "meta": {"name": "bucket"},
        "endpoint": "http://127.0.0.1:9000",
        "bucket": "b",
        "template": "t",
    }
    async with broker() as client:
        body = (await post(client, "/requests", document)).json()
    assert body["result"] == "NO"
    assert f"/data/0/{field}: 127.0.0.1 is a loopback address" in _texts(body)


async def test_the_allow_list_opens_a_denied_location(broker: BrokerClient) -> None:
    async with broker(egress_allow=["127.0.0.1", "localhost:8491"]) as client:
        loopback = (await post(client, "/requests", _with_data("http://127.0.0.1:8/x"))).json()
        named = (await post(client, "/requests", _with_data("http://localhost:8491/x"))).json()
        other = (await post(client, "/requests", _with_data("http://localhost:8492/x"))).json()
    assert loopback["result"] == "YES"
    assert named["result"] == "YES"
    assert other["result"] == "NO"
    assert "localhost is a loopback name" in _texts(other)


async def test_names_and_public_addresses_are_planned(broker: BrokerClient) -> None:
    # A name is resolved and checked when it is fetched, not when planned.
    async with broker() as client:
        for location in ("https://data.example.org/x.fits", "http://93.184.215.14/x"):
            body = (await post(client, "/requests", _with_data(location))).json()
            assert body["result"] == "YES", _texts(body)


async def test_file_locations_are_left_to_the_file_roots(broker: BrokerClient) -> None:
    # file://localhost/… names this machine's files, not a network service: the platform's
    # file roots decide (docker_file_roots), not the egress policy.
    async with broker() as client:
        body = (await post(client, "/requests", _with_data("file://localhost/srv/x.fits"))).json()
    assert "does not fetch from" not in _texts(body)
