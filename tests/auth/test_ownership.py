"""Who may do what: every endpoint for the owner, another user, nobody, and an admin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import BrokerClient
from tests.support.engine import FAST
from tests.support.users import auth
from tests.support.wire import example, notebook_request, phase_update, post, request_offers

NOBODY = "a0000000-0000-4000-8000-000000000000"


def _urls(document: Any) -> Iterator[str]:
    """Every record URL inside a document (meta.url of the record and of its parts)."""
    if isinstance(document, dict):
        meta = document.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("url"), str):
            yield urlsplit(meta["url"]).path
        for value in document.values():
            yield from _urls(value)
    elif isinstance(document, list):
        for item in document:
            yield from _urls(item)


@pytest.fixture
async def alice(broker: BrokerClient) -> AsyncIterator[httpx.AsyncClient]:
    async with broker(user="alice") as client:
        yield client


async def test_every_endpoint_but_health_and_docs_needs_a_token(
    alice: httpx.AsyncClient,
) -> None:
    schema = (await alice.get("/openapi.json", headers={"Authorization": ""})).json()
    open_paths = {"/healthz", "/metrics"}
    checked = 0
    for template, operations in schema["paths"].items():
        path = template.replace("{uuid}", NOBODY)
        for method in operations:
            for headers in ({}, {"Authorization": "Bearer not-a-token-of-anyone"}):
                answer = await alice.request(
                    method.upper(), path, headers={"Authorization": "", **headers}
                )
                if template in open_paths:
                    assert answer.status_code == 200, (method, path)
                    continue
                checked += 1
                assert answer.status_code == 401, (method, path, answer.text)
                challenge = answer.headers["www-authenticate"]
                assert challenge.startswith("Bearer realm=")
                assert ('error="invalid_token"' in challenge) == bool(headers)
                assert answer.json()["error"] == "unauthorized"
    assert checked >= 2 * 14
    for free in ("/healthz", "/openapi.json", "/docs", "/redoc"):
        assert (await alice.get(free, headers={"Authorization": ""})).status_code == 200


async def test_other_users_get_404_everywhere_and_admins_get_everything(
    alice: httpx.AsyncClient,
) -> None:
    offered = await request_offers(alice, notebook_request())
    rejected_url = urlsplit(offered["offers"][1]["meta"]["url"]).path
    assert (await post(alice, rejected_url, phase_update("REJECTED"))).status_code == 200
    direct = await post(alice, "/direct", example("container-with-data-request.yaml"))
    assert direct.status_code == 303, direct.text
    session = direct.json()
    session_url = urlsplit(session["meta"]["url"]).path
    readable = sorted({*_urls(offered), *_urls(session)})
    component_urls = [u for u in readable if not u.startswith(("/sessions/", "/offersets/"))]
    assert {u.split("/")[1] for u in component_urls} == {
        "executables",
        "compute",
        "storage",
        "data",
        "volumes",
    }

    for url in readable:
        assert (await alice.get(url)).status_code == 200, url
        mine = await alice.get(url, headers=auth("root"))
        assert mine.status_code == 200, url
        theirs = await alice.get(url, headers=auth("bob"))
        assert theirs.status_code == 404, url
        assert "No " in theirs.json()["messages"][0]["message"]
        assert (await alice.get(url, headers={"Authorization": ""})).status_code == 401
        # Long-polls answer the same way.
        if url.startswith("/sessions/"):
            waited = await alice.get(f"{url}?wait=1", headers=auth("bob"))
            assert waited.status_code == 404

    # Event streams: the rejected offer has ended, so its stream ends after one event.
    events = f"{rejected_url}/events"
    assert (await alice.get(events, headers=auth("bob"))).status_code == 404
    assert (await alice.get(events, headers={"Authorization": ""})).status_code == 401
    for user in ("alice", "root"):
        streamed = await alice.get(events, headers=auth(user))
        assert streamed.status_code == 200
        assert '"phase": "REJECTED"' in streamed.text

    # Listings: bob sees none of alice's; the admin sees them all.
    listed = {
        "/sessions": [session["meta"]["uuid"], offered["offers"][0]["meta"]["uuid"]],
        "/offersets": [offered["meta"]["uuid"]],
    }
    for listing, uuids in listed.items():
        own = (await alice.get(listing)).text
        bobs = (await alice.get(listing, headers=auth("bob"))).text
        admins = (await alice.get(listing, headers=auth("root"))).text
        for uuid in uuids:
            assert uuid in own, listing
            assert uuid not in bobs, listing
            assert uuid in admins, listing

    # Updates: bob cannot cancel alice's session, nor accept her offer; nothing changes.
    cancel = phase_update("CANCELLED")
    assert (await post_as(alice, session_url, cancel, "bob")).status_code == 404
    offer_url = urlsplit(offered["offers"][0]["meta"]["url"]).path
    assert (await post_as(alice, offer_url, phase_update("ACCEPTED"), "bob")).status_code == 404
    assert (await alice.get(offer_url)).json()["phase"] == "OFFERED"
    assert (await alice.get(session_url)).json()["phase"] not in ("CANCELLED",)
    assert "Cancelled" not in str((await alice.get(session_url)).json()["meta"]["messages"])

    # The admin can act on it, and the record says who did.
    cancelled = await post_as(alice, session_url, cancel, "root")
    assert cancelled.status_code == 200, cancelled.text
    assert "Cancelled by root" in str(cancelled.json()["meta"]["messages"])


async def post_as(client: httpx.AsyncClient, url: str, document: Any, user: str) -> httpx.Response:
    return await client.post(url, json=document, headers=auth(user))


async def test_a_user_with_the_same_uuid_guess_learns_nothing(
    alice: httpx.AsyncClient,
) -> None:
    """Another user's record and a record that does not exist answer exactly alike."""
    offered = await request_offers(alice, notebook_request())
    url = urlsplit(offered["meta"]["url"]).path
    theirs = await alice.get(url, headers=auth("bob"))
    missing = await alice.get(url.replace(offered["meta"]["uuid"], NOBODY), headers=auth("bob"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"] == missing.json()["error"]
    assert (
        theirs.json()["messages"][0]["message"].replace(offered["meta"]["uuid"], NOBODY)
        == (missing.json()["messages"][0]["message"])
    )


async def test_connector_locations_are_shown_to_the_owner_only(broker: BrokerClient) -> None:
    async with broker(user="alice", **FAST) as client:
        document = notebook_request()
        document["schedule"] = {"requested": {"duration": "PT1M"}}
        created = await post(client, "/direct", document)
        assert created.status_code == 303, created.text
        url = created.headers["location"]
        session = created.json()
        for _ in range(20):
            session = (await client.get(f"{url}?wait=5&phase={session['phase']}")).json()
            if session["connectors"]:
                break
        assert session["connectors"], session["phase"]
        assert session["connectors"][0]["location"].startswith("https://")
        admin = (await client.get(url, headers=auth("root"))).json()
        assert admin["connectors"]
        assert "location" not in admin["connectors"][0]
        await post(client, url, phase_update("CANCELLED"))
