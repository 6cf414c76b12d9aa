"""The client against brokers that serve the v1.0 contract but not execbroker's extras.

A fake broker (an ``httpx.MockTransport``) answers as a broker may within the contract:
303 with only a ``Location``, documents with fields and kinds this client does not know,
no long-poll. The client still reads offers and sessions, and does not spin.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from execbroker.client import (
    BrokerClient,
    NotFoundError,
    SessionPhase,
    pick_offer,
    summarise_offers,
)
from execbroker.client import protocol as client_protocol
from execbroker.model import kinds

OFFER_SET = "11111111-1111-4111-8111-111111111111"
OFFER = "22222222-2222-4222-8222-222222222222"


def _session(phase: str) -> dict[str, Any]:
    return {
        # The older spelling of the session kind, and fields this client does not know.
        "kind": "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/session/simple-execution-session-1.0",
        "meta": {
            "uuid": OFFER,
            "options": [
                {"kind": "uri:enum-value-option", "path": "/phase", "values": ["ACCEPTED"]},
                {"kind": "uri:some-future-option", "path": "/colour"},
            ],
            "vendorNote": "hello",
        },
        "phase": phase,
        "schedule": {"available": {"start": "2030-01-01T10:00:00Z/PT0S", "duration": "PT2H"}},
        "compute": {
            "kind": kinds.COMPUTE_SIMPLE,
            "cores": {"min": 4, "max": 4},
            "memory": {"min": 8, "max": 8},
            "gpus": 1,
        },
        "executable": {"kind": "https://example.org/kinds/unheard-of-executable.yaml"},
    }


class OtherBroker:
    """A contract broker: ignores ``?wait=``; the session ends after ``polls_to_end`` reads."""

    def __init__(self, polls_to_end: int = 3) -> None:
        self.calls: list[httpx.Request] = []
        self.polls_to_end = polls_to_end

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        path = request.url.path
        if request.method == "POST" and path == "/requests":
            return httpx.Response(303, headers={"Location": f"/offersets/{OFFER_SET}"})
        if path == f"/offersets/{OFFER_SET}":
            return httpx.Response(
                200,
                json={
                    "meta": {"uuid": OFFER_SET},
                    "result": "YES",
                    "offers": [_session("OFFERED")],
                },
            )
        if path == f"/sessions/{OFFER}":
            reads = sum(1 for c in self.calls if c.url.path == path)
            phase = "COMPLETED" if reads > self.polls_to_end else "RUNNING"
            return httpx.Response(200, json=_session(phase))
        return httpx.Response(404, text="<html>not here</html>")


def _client(broker: OtherBroker) -> BrokerClient:
    http = httpx.Client(base_url="http://other.test", transport=httpx.MockTransport(broker))
    return BrokerClient("http://other.test", http=http)


def test_offers_from_a_location_only_answer_with_unknown_fields() -> None:
    with _client(OtherBroker()) as broker:
        offers = broker.request_offers({"executable": {"kind": kinds.EXECUTABLE_DOCKER}})
    (offer,) = summarise_offers(offers)
    assert offer.cores == 4
    assert offer.memory_gib == 8
    assert offer.duration is not None
    assert offer.duration.total_seconds() == 7200
    assert pick_offer(offers, "1") == offer
    assert pick_offer(offers, "best") == offer
    # What the client does not know is left out; what it knows is kept.
    session = offer.session
    assert session is not None
    assert session.executable is None
    assert [o.path for o in session.meta.options or []] == ["/phase"]  # type: ignore[union-attr]


def test_wait_paces_itself_when_the_broker_does_not_hold_long_polls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_protocol, "_PACE", 0.2)
    other = OtherBroker(polls_to_end=4)
    started = time.monotonic()
    with _client(other) as broker:
        ended = broker.wait(OFFER, timeout=10)
    assert ended.phase is SessionPhase.COMPLETED
    # 1 read, then 3 unheld polls each followed by a pause, then the one that sees the end.
    assert len(other.calls) == 5
    assert time.monotonic() - started >= 3 * 0.2


def test_an_error_that_is_not_an_error_document() -> None:
    with _client(OtherBroker()) as broker, pytest.raises(NotFoundError) as failure:
        broker.session("33333333-3333-4333-8333-333333333333")
    assert failure.value.error == "http_404"
    assert "not here" in str(failure.value)


def test_offer_choice_must_exist() -> None:
    with _client(OtherBroker()) as broker:
        offers = broker.request_offers({"executable": {"kind": kinds.EXECUTABLE_DOCKER}})
    with pytest.raises(ValueError, match="1 offer"):
        pick_offer(offers, "2")
    with pytest.raises(ValueError, match="best"):
        pick_offer(offers, "cheapest")
