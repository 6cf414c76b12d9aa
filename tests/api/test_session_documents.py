"""A session read again is answered from what was rendered last while it has not changed
(issue 18): every change still shows in the next read, and one reader's view is never
another's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from tests.conftest import BrokerClient
from tests.support.engine import COMPONENT_TERMINAL, FAST, components, container
from tests.support.users import auth
from tests.support.wire import notebook_request, phase_update, post


async def _read_until(
    client: httpx.AsyncClient, url: str, done: Any, *, within: float = 20
) -> dict[str, Any]:
    """Plain GETs (no long-poll) until ``done(document)``: what a polling client sees."""
    deadline = time.monotonic() + within
    while True:
        document: dict[str, Any] = (await client.get(url)).json()
        if done(document):
            return document
        assert time.monotonic() < deadline, f"not seen within {within} s: {document}"
        await asyncio.sleep(0.02)


async def test_every_change_shows_in_the_next_plain_read(broker: BrokerClient) -> None:
    async with broker(user="alice", **FAST) as client:
        created = await post(client, "/direct", container({"MOCK_RUN_SECONDS": "600"}))
        assert created.status_code == 303, created.text
        url = urlsplit(created.headers["location"]).path
        seen = [(await client.get(url)).json()["phase"]]
        # The engine's steps (no user update among them) show as they are written.
        running = await _read_until(client, url, lambda d: d["phase"] == "RUNNING")
        seen.append(running["phase"])
        assert running["compute"]["phase"] == "RUNNING"
        assert (await client.get(url)).json() == running, "nothing changed, the same answer"

        cancelled = await post(client, url, phase_update("CANCELLED"))
        assert cancelled.status_code == 200, cancelled.text
        after = (await client.get(url)).json()
        assert after["phase"] == "CANCELLED"
        assert "Cancelled by alice" in str(after["meta"]["messages"])
        released = await _read_until(
            client,
            url,
            lambda d: all(p["phase"] in COMPONENT_TERMINAL for p in components(d).values()),
        )
        assert released["meta"]["modified"] >= after["meta"]["modified"]
        assert seen[0] in ("ACCEPTED", "WAITING", "PREPARING", "RUNNING")


async def test_the_owner_an_administrator_and_another_user_each_get_their_own_answer(
    broker: BrokerClient,
) -> None:
    async with broker(user="alice", **FAST) as client:
        created = await post(client, "/direct", notebook_request())
        assert created.status_code == 303, created.text
        url = urlsplit(created.headers["location"]).path
        mine = await _read_until(client, url, lambda d: bool(d["connectors"]))
        secret = mine["connectors"][0]["location"]
        # Read in turn, each twice: nobody is answered with what was rendered for another.
        for _ in range(2):
            owner = (await client.get(url)).json()
            assert owner["connectors"][0]["location"] == secret
            admin = await client.get(url, headers=auth("root"))
            assert admin.status_code == 200
            assert secret not in admin.text
            assert "location" not in admin.json()["connectors"][0]
            other = await client.get(url, headers=auth("bob"))
            assert other.status_code == 404
            assert secret not in other.text
            as_yaml = await client.get(url, headers={"Accept": "application/yaml"})
            assert as_yaml.headers["content-type"].startswith("application/yaml")
            assert yaml.safe_load(as_yaml.text)["connectors"][0]["location"] == secret
        # The same reads after a change: the change, for each of them.
        assert (await post(client, url, phase_update("CANCELLED"))).status_code == 200
        assert (await client.get(url)).json()["phase"] == "CANCELLED"
        assert (await client.get(url, headers=auth("root"))).json()["phase"] == "CANCELLED"
        assert (await client.get(url, headers=auth("bob"))).status_code == 404
        as_yaml = await client.get(url, headers={"Accept": "application/yaml"})
        assert yaml.safe_load(as_yaml.text)["phase"] == "CANCELLED"


async def test_a_listing_read_again_shows_new_and_changed_sessions_at_once(
    broker: BrokerClient,
) -> None:
    async with broker(user="alice", **FAST) as client:

        async def listed(query: str = "?last=5", user: str = "alice") -> list[tuple[str, str]]:
            answer = await client.get(f"/sessions{query}", headers=auth(user))
            assert answer.status_code == 200, answer.text
            return [(s["meta"]["uuid"], s["phase"]) for s in answer.json()["sessions"]]

        assert await listed() == []
        first = await post(client, "/direct", container({"MOCK_RUN_SECONDS": "600"}))
        first_uuid = first.json()["meta"]["uuid"]
        assert [uuid for uuid, _ in await listed()] == [first_uuid]
        second = await post(client, "/direct", container({"MOCK_RUN_SECONDS": "600"}))
        second_uuid = second.json()["meta"]["uuid"]
        assert [uuid for uuid, _ in await listed()] == [second_uuid, first_uuid]
        assert [uuid for uuid, _ in await listed("?last=1")] == [second_uuid]

        url = urlsplit(first.headers["location"]).path
        assert (await post(client, url, phase_update("CANCELLED"))).status_code == 200
        assert (first_uuid, "CANCELLED") in await listed()
        assert (first_uuid, "CANCELLED") in await listed("")
        # The engine's own steps show too: the second one starts running.
        deadline = time.monotonic() + 20
        while (second_uuid, "RUNNING") not in await listed():
            assert time.monotonic() < deadline, await listed()
            await asyncio.sleep(0.02)

        assert await listed(user="bob") == []
        everyone = [uuid for uuid, _ in await listed(user="root")]
        assert everyone[:2] == [second_uuid, first_uuid]
