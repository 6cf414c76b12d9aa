"""A connector is published once its URL answers: Skaha before CANFAR 2026.2 answers 503
on a session's connect URL for about 30 s after Running, and a user sent there then sees an
error page. The component stays preparing, saying so, until a GET answers."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.skaha.conftest import FAST_TIMINGS, MakeWorld
from tests.skaha.documents import notebook, web_app
from tests.skaha.test_lifecycle import start
from tests.support.engine import texts

WARMUP = 3.0


@pytest.mark.parametrize("document", [notebook("PT1M"), web_app()], ids=["notebook", "web-app"])
async def test_a_connector_is_published_only_once_its_url_answers(
    broker: Any, make_world: MakeWorld, document: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(timings=replace(FAST_TIMINGS, connect_warmup=timedelta(seconds=WARMUP)))
    running_since: float | None = None
    # The compute's budget (its estimate plus slack) holds the warm-up.
    async with broker(**world.settings(budget_slack=WARMUP + 5)) as client:
        url = await start(client, document)
        deadline = time.monotonic() + 20
        session = (await client.get(url)).json()
        while session["phase"] != "AVAILABLE" and time.monotonic() < deadline:
            running = [
                sid for sid in world.sessions() if world.fake.session_status(sid) == "Running"
            ]
            if running and running_since is None:
                running_since = time.monotonic()
            session = (await client.get(url, params={"wait": 0.2})).json()
        published = time.monotonic()
        connector = session["connectors"][0]
        async with httpx.AsyncClient() as browser:
            page = await browser.get(connector["location"])

    assert session["phase"] == "AVAILABLE", texts(session)
    assert page.status_code == 200, "the user is not sent to an error page"
    assert running_since is not None
    assert published - running_since >= WARMUP - 1, "not published while it answered 503"
    assert "answered PT" in texts(session["compute"])
    assert "after it was running; its connector is published from now on" in texts(
        session["compute"]
    )
    sid = world.sessions()[0]
    assert sid not in caplog.text, "the connect URL (its secret) is never logged"
