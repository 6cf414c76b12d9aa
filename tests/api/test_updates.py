"""POST /sessions/{uuid}: accept, reject, cancel, and every way an update can be wrong."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from execbroker.api.formats.negotiation import MediaFormat
from tests.support.engine import until_ended
from tests.support.inprocess import until_waiting
from tests.support.wire import example, notebook_request, phase_update, post, request_offers


async def test_accepting_one_offer_rejects_its_siblings(client: httpx.AsyncClient) -> None:
    # Starting in 2030: once accepted it waits, so its phase is still ACCEPTED or WAITING.
    offer_set = await request_offers(client, example("notebook-request.yaml"))
    first, *others = offer_set["offers"]
    assert others, "the notebook request gets alternatives"

    response = await post(client, first["meta"]["url"], example("accept-update.json"))

    assert response.status_code == 200
    accepted = response.json()
    assert accepted["phase"] in ("ACCEPTED", "WAITING")  # the engine may have seen it already
    assert accepted["meta"]["options"][0]["values"] == ["CANCELLED"]
    assert accepted["executable"]["phase"] == "WAITING"  # its start is in 2030
    assert "Offer accepted" in accepted["meta"]["messages"][-1]["message"]
    reread = (await client.get(offer_set["meta"]["url"])).json()
    phases = {o["meta"]["uuid"]: o["phase"] for o in reread["offers"]}
    assert phases.pop(first["meta"]["uuid"]) in ("ACCEPTED", "WAITING")
    assert set(phases.values()) == {"REJECTED"}
    sibling = next(o for o in reread["offers"] if o["phase"] == "REJECTED")
    assert sibling["compute"]["phase"] == "CANCELLED"
    assert sibling["meta"]["options"] == []
    assert first["meta"]["uuid"] in sibling["meta"]["messages"][-1]["message"]


async def test_a_rejected_sibling_cannot_be_accepted(client: httpx.AsyncClient) -> None:
    offers = (await request_offers(client, notebook_request()))["offers"]
    await post(client, offers[0]["meta"]["url"], phase_update("ACCEPTED"))

    response = await post(client, offers[1]["meta"]["url"], phase_update("ACCEPTED"))

    assert response.status_code == 409
    assert "REJECTED" in response.json()["messages"][0]["message"]


async def test_concurrent_accepts_of_siblings_have_exactly_one_winner(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(5):
        offers = (await request_offers(client, notebook_request()))["offers"]
        responses = await asyncio.gather(
            *(post(client, o["meta"]["url"], phase_update("ACCEPTED")) for o in offers)
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * (len(offers) - 1)
        winner = next(r.json() for r in responses if r.status_code == 200)
        reread = (await client.get(winner["meta"]["url"])).json()
        assert reread["phase"] in ("ACCEPTED", "WAITING", "PREPARING")


async def test_reject_in_yaml_and_path_without_slash(client: httpx.AsyncClient) -> None:
    offers = (await request_offers(client, notebook_request()))["offers"]
    response = await post(
        client, offers[0]["meta"]["url"], example("reject-update.yaml"), MediaFormat.YAML
    )
    assert response.status_code == 200
    assert response.json()["phase"] == "REJECTED"
    assert response.json()["compute"]["phase"] == "CANCELLED"

    response = await post(client, offers[1]["meta"]["url"], phase_update("REJECTED", "phase"))
    assert response.json()["phase"] == "REJECTED"
    # The other offers are untouched by a rejection.
    untouched = (await client.get(offers[2]["meta"]["url"])).json()
    assert untouched["phase"] == "OFFERED"


async def test_cancel_is_recorded_for_an_accepted_session(client: httpx.AsyncClient) -> None:
    session = (await post(client, "/direct", example("direct-request.json"))).json()

    response = await post(client, session["meta"]["url"], example("cancel-update.json"))

    assert response.status_code == 200
    # The answer says CANCELLED, as the reference broker's does: the decision is final.
    assert response.json()["phase"] == "CANCELLED"
    assert response.json()["meta"]["options"] == []
    retried = await post(client, session["meta"]["url"], example("cancel-update.json"))
    assert retried.status_code == 200, "a retried cancel is not an error"
    assert retried.json()["phase"] == "CANCELLED"
    # The engine releases whatever had started; the session stays CANCELLED throughout.
    cancelled = await until_ended(client, session["meta"]["url"])
    assert cancelled["phase"] == "CANCELLED"
    assert cancelled["compute"]["phase"] == "CANCELLED"
    assert {c["phase"] for c in (cancelled["executable"], cancelled["compute"])} <= {
        "CANCELLED",
        "COMPLETED",
    }
    again = await post(client, session["meta"]["url"], phase_update("ACCEPTED"))
    assert again.status_code == 409
    assert "has ended" in again.json()["messages"][0]["message"]


async def test_repeating_an_update_that_already_applied_is_harmless(
    client: httpx.AsyncClient,
) -> None:
    # Starts in 2030, so the engine leaves it WAITING between the two accepts.
    offers = (await request_offers(client, example("notebook-request.yaml")))["offers"]
    url = offers[0]["meta"]["url"]
    assert (await post(client, url, phase_update("ACCEPTED"))).status_code == 200
    repeat = await post(client, url, phase_update("ACCEPTED"))
    assert repeat.status_code == 200
    assert repeat.json()["phase"] in ("ACCEPTED", "WAITING")


WRONG_PHASE = [
    ("cancel an offer", "OFFERED", "CANCELLED"),
    ("reject an accepted session", "ACCEPTED", "REJECTED"),
]


@pytest.mark.parametrize(("state", "value"), [(s, v) for _, s, v in WRONG_PHASE])
async def test_updates_in_the_wrong_phase_are_409(
    client: httpx.AsyncClient, state: str, value: str
) -> None:
    if state == "OFFERED":
        url = (await request_offers(client, notebook_request()))["offers"][0]["meta"]["url"]
    else:
        url = (await post(client, "/direct", example("direct-request.json"))).json()["meta"]["url"]

    response = await post(client, url, phase_update(value))

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflict"
    now = (await client.get(url)).json()["phase"]
    assert (
        f"The session is {now}" in body["messages"][0]["message"]
        or state in (body["messages"][0]["message"])
    )
    assert now == state or (state == "ACCEPTED" and now in ("WAITING", "PREPARING"))


MALFORMED = [
    ("unknown kind", {"kind": "uri:magic-update", "path": "/phase", "value": "ACCEPTED"}, "kind"),
    ("no kind", {"path": "/phase", "value": "ACCEPTED"}, "kind"),
    ("unknown path", {"kind": "uri:enum-value-update", "path": "/owner", "value": "x"}, "/owner"),
    ("not a phase", phase_update("DANCING"), "DANCING"),
    ("engine phase", phase_update("RUNNING"), "RUNNING"),
    ("missing value", {"kind": "uri:enum-value-update", "path": "/phase"}, "value"),
    (
        "wrong update kind",
        {"kind": "uri:integer-delta-update", "path": "/phase", "delta": 1},
        "enum-value-update",
    ),
    ("not an object", ["ACCEPTED"], "object"),
]


@pytest.mark.parametrize(
    ("update", "words"), [pytest.param(u, w, id=case) for case, u, w in MALFORMED]
)
async def test_malformed_updates_are_422_and_change_nothing(
    client: httpx.AsyncClient, update: object, words: str
) -> None:
    url = (await request_offers(client, notebook_request()))["offers"][0]["meta"]["url"]

    response = await post(client, url, update)

    assert response.status_code == 422
    assert words in " ".join(m["message"] for m in response.json()["messages"])
    assert (await client.get(url)).json()["phase"] == "OFFERED"


async def test_unknown_and_malformed_uuids_are_404(client: httpx.AsyncClient) -> None:
    for url in (
        "/sessions/00000000-0000-0000-0000-000000000000",
        "/sessions/not-a-uuid",
        "/offersets/00000000-0000-0000-0000-000000000000",
        "/compute/00000000-0000-0000-0000-000000000000",
    ):
        response = await client.get(url)
        assert response.status_code == 404, url
        assert response.json()["messages"][0]["message"].startswith("No ")
    response = await post(
        client, "/sessions/00000000-0000-0000-0000-000000000000", phase_update("ACCEPTED")
    )
    assert response.status_code == 404


async def test_a_component_url_of_another_collection_is_404(client: httpx.AsyncClient) -> None:
    offer = (await request_offers(client, notebook_request()))["offers"][0]
    compute_uuid = offer["compute"]["meta"]["uuid"]
    assert (await client.get(f"/compute/{compute_uuid}")).status_code == 200
    assert (await client.get(f"/storage/{compute_uuid}")).status_code == 404


async def test_a_long_poll_on_a_sibling_hears_at_once_that_it_was_rejected(
    client: httpx.AsyncClient,
) -> None:
    offers = (await request_offers(client, example("notebook-request.yaml")))["offers"]
    assert len(offers) >= 2
    sibling = offers[1]["meta"]["url"]
    waiting = asyncio.ensure_future(client.get(sibling, params={"wait": 10}))
    await until_waiting(client, 1)
    started = time.monotonic()
    accepted = await post(client, offers[0]["meta"]["url"], phase_update("ACCEPTED"))
    assert accepted.status_code == 200
    heard = await waiting
    assert heard.json()["phase"] == "REJECTED"
    # Woken by the accept, not by the safety-net re-read (seconds later).
    assert time.monotonic() - started < 2
